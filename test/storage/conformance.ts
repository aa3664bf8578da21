/**
 * One conformance suite for every WritableStorage. It pins the behaviour of
 * MemoryStorage (which the simulator and the Raft tests use) as the contract, so a
 * durable store that passes it answers the core exactly as the tested one does.
 *
 * A factory with `reopen` is durable: after every scenario (and at chosen points inside
 * some) the store is closed and reopened, and must then report identical state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Storage } from '../../src/raft/storage.ts';
import type { ClusterConfig, Entry, Snapshot } from '../../src/raft/types.ts';
import type { Bootstrap } from '../../src/storage/level-load.ts';
import type {
  StoredAddress,
  StoredIdentity,
  WritableStorage,
} from '../../src/storage/writable-storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, nodeId, term as tm } from '../../src/util/ids.ts';
import { bytes, entry, hardState, ids } from '../raft/harness.ts';

export interface StorageFactory {
  readonly name: string;
  /** A new store; `identity`, when given, is stored with the bootstrap. */
  create(bootstrap: Bootstrap, identity?: StoredIdentity): Promise<WritableStorage>;
  /** Closes `storage` and opens what it persisted. Absent for stores that keep nothing. */
  reopen?(storage: WritableStorage): Promise<WritableStorage>;
  /** Closes whatever is still open and removes files; runs after every test. */
  cleanup?(): Promise<void>;
}

const [a, b, c, d] = ids('a', 'b', 'c', 'd');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const unlimitedBytes = Number.MAX_SAFE_INTEGER;

/** Everything the core can read, as one comparable value. */
export function readAll(storage: Storage): unknown {
  const first = storage.firstIndex();
  const last = storage.lastIndex();
  const termsAround: Array<number | undefined> = [];
  for (let index = Math.max(0, first - 2); index <= last + 1; index++) {
    termsAround.push(storage.term(idx(index)));
  }
  // Its data read now: a store may keep it on disk, read when asked, and only while open.
  const { metadata, data } = storage.snapshot();
  return {
    initialState: storage.initialState(),
    snapshot: { metadata, data },
    firstIndex: first,
    lastIndex: last,
    entries: storage.entries(first, idx(last + 1), unlimitedBytes),
    termsAround,
  };
}

function allEntries(storage: Storage): readonly Entry[] {
  return storage.entries(storage.firstIndex(), idx(storage.lastIndex() + 1), unlimitedBytes);
}

function termsOf(storage: Storage): number[] {
  return allEntries(storage).map((e) => e.term);
}

/** Entries at 2, 3, … with the given terms, after the bootstrap snapshot at 1. */
function entriesFrom(firstIndex: number, terms: readonly number[]): Entry[] {
  return terms.map((t, i) => entry(firstIndex + i, t));
}

function snapshotAt(index: number, snapshotTerm: number, snapshotConfig = config): Snapshot {
  return {
    metadata: { index: idx(index), term: tm(snapshotTerm), config: snapshotConfig },
    data: bytes(`state@${index}`),
  };
}

export function describeStorageConformance(factory: StorageFactory): void {
  describe(`storage conformance: ${factory.name}`, () => {
    afterEach(async () => {
      await factory.cleanup?.();
    });

    /**
     * Runs `check` on the store; for a durable store, reopens it, requires identical
     * state, and runs `check` again. Returns the store to go on with.
     */
    async function verify(
      storage: WritableStorage,
      check: (s: WritableStorage) => void = () => {},
    ): Promise<WritableStorage> {
      check(storage);
      if (factory.reopen === undefined) return storage;
      const before = readAll(storage);
      const reopened = await factory.reopen(storage);
      expect(readAll(reopened)).toEqual(before);
      check(reopened);
      return reopened;
    }

    async function withLog(terms: readonly number[]): Promise<WritableStorage> {
      const storage = await factory.create(config);
      await storage.persist({ entries: entriesFrom(2, terms) });
      return storage;
    }

    describe('a new store', () => {
      it('bootstrap holds the founding snapshot at index 1, term 1, with the config sorted', async () => {
        const storage = await factory.create({ voters: [c, a, b], learners: [] });

        await verify(storage, (s) => {
          expect(s.snapshot()).toEqual({
            metadata: { index: 1, term: 1, config },
            data: new Uint8Array(0),
          });
          expect(s.initialState()).toEqual({ hardState: hardState(1, null, 1), config });
          expect(s.firstIndex()).toBe(2);
          expect(s.lastIndex()).toBe(1);
          expect(s.term(idx(1))).toBe(1);
          expect(s.term(idx(0))).toBeUndefined();
          expect(s.term(idx(2))).toBeUndefined();
        });
      });

      it('joining knows nothing: an empty config and an empty log at index 0, term 0', async () => {
        const storage = await factory.create('join');

        await verify(storage, (s) => {
          expect(s.initialState()).toEqual({
            hardState: hardState(0, null, 0),
            config: { voters: [], learners: [] },
          });
          expect(s.snapshot().metadata).toEqual({
            index: 0,
            term: 0,
            config: { voters: [], learners: [] },
          });
          expect(s.firstIndex()).toBe(1);
          expect(s.lastIndex()).toBe(0);
          expect(s.term(idx(0))).toBe(0);
        });
      });
    });

    describe('append and read', () => {
      it('reads back entries of every kind, with their terms and indexes', async () => {
        const storage = await factory.create(config);
        const appended: Entry[] = [
          entry(2, 1, 'first'),
          { kind: 'noop', index: idx(3), term: tm(2) },
          { kind: 'config', index: idx(4), term: tm(2), change: { type: 'addLearner', nodeId: d } },
          { kind: 'normal', index: idx(5), term: tm(2), data: new Uint8Array(0) },
          entry(6, 3, 'x'.repeat(1000)),
        ];

        await storage.persist({ entries: appended });

        await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(2);
          expect(s.lastIndex()).toBe(6);
          expect(s.entries(idx(2), idx(7), unlimitedBytes)).toEqual(appended);
          expect(s.entries(idx(3), idx(5), unlimitedBytes)).toEqual(appended.slice(1, 3));
          expect(s.entries(idx(4), idx(4), unlimitedBytes)).toEqual([]);
          expect([2, 3, 4, 5, 6, 7].map((i) => s.term(idx(i)))).toEqual([1, 2, 2, 2, 3, undefined]);
        });
      });

      it('appends in several writes', async () => {
        let storage = await withLog([1, 1]);
        await storage.persist({ entries: entriesFrom(4, [2]) });
        storage = await verify(storage);
        await storage.persist({ entries: entriesFrom(5, [2, 2]) });

        await verify(storage, (s) => expect(termsOf(s)).toEqual([1, 1, 2, 2, 2]));
      });

      it('entries stop once bytesMax is passed, but return at least one', async () => {
        // Each entry is 24 header bytes + 4 data bytes ("e2@1") = 28 bytes.
        const storage = await withLog([1, 1, 1, 1, 1]);

        await verify(storage, (s) => {
          expect(s.entries(idx(2), idx(7), 0)).toHaveLength(1);
          expect(s.entries(idx(2), idx(7), 55)).toHaveLength(1);
          expect(s.entries(idx(2), idx(7), 56)).toHaveLength(2);
          expect(s.entries(idx(4), idx(7), 84)).toEqual(entriesFrom(4, [1, 1, 1]));
          expect(s.entries(idx(2), idx(7), unlimitedBytes)).toHaveLength(5);
        });
      });

      it('an entry larger than bytesMax still moves on its own', async () => {
        const storage = await factory.create(config);
        await storage.persist({ entries: [entry(2, 1, 'y'.repeat(500)), entry(3, 1)] });

        await verify(storage, (s) =>
          expect(s.entries(idx(2), idx(4), 100)).toEqual([entry(2, 1, 'y'.repeat(500))]),
        );
      });

      it('refuses reads outside the log', async () => {
        const storage = await withLog([1, 1]);

        expect(() => storage.entries(idx(1), idx(3), unlimitedBytes)).toThrow(AssertionError);
        expect(() => storage.entries(idx(2), idx(5), unlimitedBytes)).toThrow(AssertionError);
      });
    });

    describe('append that conflicts with the log', () => {
      it('replaces everything from its first index on, and the old suffix is gone', async () => {
        const storage = await withLog([1, 2, 2, 2, 2]);

        await storage.persist({ entries: [entry(4, 3)] });

        await verify(storage, (s) => {
          expect(s.lastIndex()).toBe(4);
          expect(termsOf(s)).toEqual([1, 2, 3]);
          expect(s.entries(idx(4), idx(5), unlimitedBytes)).toEqual([entry(4, 3)]);
          expect(s.term(idx(5))).toBeUndefined();
          expect(s.term(idx(6))).toBeUndefined();
        });
      });

      it('a longer replacement overwrites the suffix and extends the log', async () => {
        const storage = await withLog([1, 1, 1]);

        await storage.persist({ entries: entriesFrom(3, [2, 2, 2, 2, 2]) });

        await verify(storage, (s) => {
          expect(s.lastIndex()).toBe(7);
          expect(termsOf(s)).toEqual([1, 2, 2, 2, 2, 2]);
          expect(allEntries(s)).toEqual([entry(2, 1), ...entriesFrom(3, [2, 2, 2, 2, 2])]);
        });
      });

      it('a truncated log can be appended to again', async () => {
        let storage = await withLog([1, 1, 1, 1]);
        await storage.persist({ entries: [entry(3, 2)] });
        storage = await verify(storage);

        await storage.persist({ entries: entriesFrom(4, [2, 2]) });

        await verify(storage, (s) => expect(termsOf(s)).toEqual([1, 2, 2, 2]));
      });

      it('refuses a gap, and entries at or below the compacted index, and changes nothing', async () => {
        const storage = await withLog([1, 1]);
        const before = readAll(storage);

        await expect(storage.persist({ entries: [entry(5, 1)] })).rejects.toThrow(AssertionError);
        await expect(storage.persist({ entries: [entry(1, 1)] })).rejects.toThrow(AssertionError);

        await verify(storage, (s) => expect(readAll(s)).toEqual(before));
      });
    });

    describe('hard state', () => {
      it('is what initialState reports, across restarts', async () => {
        let storage = await withLog([1, 2]);

        await storage.persist({ hardState: hardState(4, b, 3) });
        storage = await verify(storage, (s) =>
          expect(s.initialState().hardState).toEqual(hardState(4, b, 3)),
        );
        await storage.persist({ hardState: hardState(5, null, 3) });

        await verify(storage, (s) =>
          expect(s.initialState().hardState).toEqual(hardState(5, null, 3)),
        );
      });

      it('is written together with entries', async () => {
        const storage = await factory.create(config);

        await storage.persist({ entries: entriesFrom(2, [2, 2]), hardState: hardState(2, a, 3) });

        await verify(storage, (s) => {
          expect(s.lastIndex()).toBe(3);
          expect(s.initialState().hardState).toEqual(hardState(2, a, 3));
        });
      });

      it('an empty persist changes nothing', async () => {
        const storage = await withLog([1]);
        const before = readAll(storage);

        await storage.persist({ snapshot: null, entries: [], hardState: null });

        await verify(storage, (s) => expect(readAll(s)).toEqual(before));
      });
    });

    describe('a snapshot from the leader', () => {
      it('replaces the whole log and its config becomes the initial config', async () => {
        const storage = await withLog([1, 1, 2, 2, 2]);
        const newConfig: ClusterConfig = { voters: [a, b, d], learners: [c] };

        await storage.persist({ snapshot: snapshotAt(10, 3, newConfig) });

        await verify(storage, (s) => {
          expect(s.snapshot()).toEqual(snapshotAt(10, 3, newConfig));
          expect(s.firstIndex()).toBe(11);
          expect(s.lastIndex()).toBe(10);
          expect(s.term(idx(10))).toBe(3);
          expect(s.term(idx(6))).toBeUndefined();
          expect(s.initialState().config).toEqual(newConfig);
        });
      });

      it('replaces the log even when it falls inside it', async () => {
        const storage = await withLog([1, 1, 2, 2, 2]);

        await storage.persist({ snapshot: snapshotAt(4, 1) });

        await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(5);
          expect(s.lastIndex()).toBe(4);
          expect(s.term(idx(4))).toBe(1);
          expect(s.term(idx(5))).toBeUndefined();
        });
      });

      it('is written with the entries after it and the hard state in one persist', async () => {
        const storage = await withLog([1, 1]);

        await storage.persist({
          snapshot: snapshotAt(10, 3),
          entries: entriesFrom(11, [3, 4]),
          hardState: hardState(4, c, 10),
        });

        await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(11);
          expect(termsOf(s)).toEqual([3, 4]);
          expect(s.term(idx(10))).toBe(3);
          expect(s.initialState().hardState).toEqual(hardState(4, c, 10));
        });
      });

      it('brings a joining node its first state', async () => {
        let storage = await factory.create('join');

        await storage.persist({ snapshot: snapshotAt(5, 2), hardState: hardState(2, null, 5) });
        storage = await verify(storage, (s) => expect(s.initialState().config).toEqual(config));
        await storage.persist({ entries: entriesFrom(6, [2]) });

        await verify(storage, (s) => expect(s.lastIndex()).toBe(6));
      });

      it('refuses a snapshot older than the one it holds', async () => {
        const storage = await factory.create(config);
        await storage.persist({ snapshot: snapshotAt(10, 3) });

        await expect(storage.persist({ snapshot: snapshotAt(9, 3) })).rejects.toThrow(
          AssertionError,
        );
        await verify(storage, (s) => expect(s.snapshot().metadata.index).toBe(10));
      });
    });

    describe('createSnapshot and compact', () => {
      // Log 2..10 with terms 1,1,2,2,2,3,3,3,3.
      const terms = [1, 1, 2, 2, 2, 3, 3, 3, 3];
      const laterConfig: ClusterConfig = { voters: [a, b, c], learners: [nodeId('e')] };

      it('createSnapshot records the term at its index and keeps the log', async () => {
        const storage = await withLog(terms);

        const created = await storage.createSnapshot(idx(8), laterConfig, bytes('sm@8'));

        expect(created).toEqual({
          metadata: { index: 8, term: 3, config: laterConfig },
          data: bytes('sm@8'),
        });
        await verify(storage, (s) => {
          expect(s.snapshot()).toEqual(created);
          expect(s.firstIndex()).toBe(2);
          expect(termsOf(s)).toEqual(terms);
        });
      });

      it("compact drops entries up to its index but keeps that index's term", async () => {
        let storage = await withLog(terms);
        await storage.createSnapshot(idx(8), laterConfig, bytes('sm@8'));

        await storage.compact(idx(6));
        storage = await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(7);
          expect(s.term(idx(6))).toBe(2);
          expect(s.term(idx(5))).toBeUndefined();
          expect(s.entries(idx(7), idx(11), unlimitedBytes)).toEqual(entriesFrom(7, [3, 3, 3, 3]));
          expect(() => s.entries(idx(6), idx(8), unlimitedBytes)).toThrow(AssertionError);
        });
        await storage.compact(idx(8));

        await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(9);
          expect(s.lastIndex()).toBe(10);
          expect(s.term(idx(8))).toBe(3);
          expect(s.snapshot().metadata.index).toBe(8);
        });
      });

      it('compact at or below the compacted index does nothing', async () => {
        const storage = await withLog(terms);
        await storage.createSnapshot(idx(8), config, bytes('sm@8'));
        await storage.compact(idx(6));
        const before = readAll(storage);

        await storage.compact(idx(6));
        await storage.compact(idx(3));

        await verify(storage, (s) => expect(readAll(s)).toEqual(before));
      });

      it('the log can grow and be truncated after a compaction', async () => {
        let storage = await withLog(terms);
        await storage.createSnapshot(idx(8), config, bytes('sm@8'));
        await storage.compact(idx(8));
        storage = await verify(storage);

        await storage.persist({ entries: entriesFrom(10, [4, 4, 4]) });

        await verify(storage, (s) => {
          expect(s.firstIndex()).toBe(9);
          expect(termsOf(s)).toEqual([3, 4, 4, 4]);
        });
      });

      it('refuses a snapshot that goes backwards and a compaction past the snapshot', async () => {
        const storage = await withLog(terms);
        await storage.createSnapshot(idx(8), config, bytes('sm@8'));

        await expect(storage.createSnapshot(idx(7), config, bytes('old'))).rejects.toThrow(
          AssertionError,
        );
        await expect(storage.createSnapshot(idx(11), config, bytes('past'))).rejects.toThrow(
          AssertionError,
        );
        await expect(storage.compact(idx(9))).rejects.toThrow(AssertionError);
        await verify(storage, (s) => {
          expect(s.snapshot().metadata.index).toBe(8);
          expect(s.firstIndex()).toBe(2);
        });
      });

      it('an append may not rewrite compacted entries', async () => {
        const storage = await withLog(terms);
        await storage.createSnapshot(idx(8), config, bytes('sm@8'));
        await storage.compact(idx(6));

        await expect(storage.persist({ entries: [entry(6, 4)] })).rejects.toThrow(AssertionError);
        await verify(storage, (s) => expect(s.lastIndex()).toBe(10));
      });
    });

    describe('identity: the cluster and the node a store belongs to', () => {
      const identity: StoredIdentity = { clusterId: 'c-7f3a', nodeId: a };

      it('a store created without one has none, as a database written before identities', async () => {
        for (const bootstrap of [config, 'join'] as const) {
          const storage = await factory.create(bootstrap);

          await verify(storage, (s) => expect(s.identity).toBeNull());
        }
      });

      it('a new store holds the identity it was created with, founding or joining', async () => {
        const joining: StoredIdentity = { clusterId: '', nodeId: d };
        for (const [bootstrap, given] of [
          [config, identity],
          ['join', joining],
        ] as const) {
          const storage = await factory.create(bootstrap, given);

          await verify(storage, (s) => expect(s.identity).toEqual(given));
        }
      });

      it('a saved identity reads back, replaces the one before, and changes nothing the core reads', async () => {
        const storage = await withLog([1, 2]);
        const before = readAll(storage);

        await storage.saveIdentity({ clusterId: '', nodeId: a });
        await storage.saveIdentity(identity);

        await verify(storage, (s) => {
          expect(s.identity).toEqual(identity);
          expect(readAll(s)).toEqual(before);
        });
      });

      it('keeps what was saved, not the object the caller goes on changing', async () => {
        const storage = await factory.create(config);
        const given = { clusterId: 'c-1', nodeId: a };

        await storage.saveIdentity(given);
        given.clusterId = 'c-2';

        await verify(storage, (s) => expect(s.identity).toEqual({ clusterId: 'c-1', nodeId: a }));
      });
    });

    describe('member addresses (not Raft state)', () => {
      const book: StoredAddress[] = [
        { id: a, peerAddress: '10.0.0.1:7001', clientAddress: '10.0.0.1:8001' },
        { id: d, peerAddress: '[::1]:7004', clientAddress: '' },
      ];

      it('are empty in a new store, founding or joining', async () => {
        for (const bootstrap of [config, 'join'] as const) {
          const storage = await factory.create(bootstrap);

          await verify(storage, (s) => expect(s.savedAddresses).toEqual([]));
        }
      });

      it('read back as saved, and a save changes nothing the core reads', async () => {
        const storage = await withLog([1, 2]);
        const before = readAll(storage);

        await storage.saveAddresses(book);

        await verify(storage, (s) => {
          expect(s.savedAddresses).toEqual(book);
          expect(readAll(s)).toEqual(before);
        });
      });

      it('the last of several saves wins, even when none waits for the one before', async () => {
        let storage = await factory.create(config);
        await storage.saveAddresses(book);
        storage = await verify(storage);

        const saves = [[], book.slice(1), book, book.slice(0, 1)].map((addresses) =>
          storage.saveAddresses(addresses),
        );
        await Promise.all(saves);

        await verify(storage, (s) => expect(s.savedAddresses).toEqual(book.slice(0, 1)));
      });

      it('may be saved while a Raft write is in flight', async () => {
        const storage = await factory.create(config);

        await Promise.all([
          storage.persist({ entries: entriesFrom(2, [1, 1]), hardState: hardState(1, a, 2) }),
          storage.saveAddresses(book),
        ]);

        await verify(storage, (s) => {
          expect(s.lastIndex()).toBe(3);
          expect(s.savedAddresses).toEqual(book);
        });
      });

      it('a save in flight when the store closes is kept', async () => {
        const storage = await factory.create(config);
        await storage.saveAddresses(book);

        const saving = storage.saveAddresses(book.slice(1));
        const reopened = factory.reopen === undefined ? storage : await factory.reopen(storage);
        await saving;

        expect(reopened.savedAddresses).toEqual(book.slice(1));
      });
    });
  });
}
