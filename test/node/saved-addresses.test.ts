import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import {
  LevelStorage,
  MemoryWritableStorage,
  type StoredAddress,
  type WritableStorage,
} from '../../src/storage/index.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { freePort } from '../support/free-port.ts';
import { sleep, until } from './cluster-harness.ts';

/**
 * The saved address book, over real gRPC and LevelDB: the cluster moves from its
 * founders n1..n3 to n4 and n5, which joined later, and whose config files name only
 * the founders and themselves. After a full stop, n4 and n5 find each other only
 * through the addresses each saved: without them they never elect a leader.
 */
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 15, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 1000,
  proposalTimeoutMs: 3_000,
  snapshotEntriesThreshold: 50,
  compactionRetainEntries: 10,
  shutdownTransferMs: 500,
};

/** How long n4 and n5, unable to reach each other, are watched for a leader. */
const NO_LEADER_WATCH_MS = 3_000;

const founders = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
const [N4, N5] = [nodeId('n4'), nodeId('n5')];
const joiners = [N4, N5];
const running = new Map<NodeId, DlmNode>();
const members = new Map<NodeId, StoredAddress>();
let root = '';

const dataDir = (id: NodeId): string => join(root, id);
const founding = (): StoredAddress[] => founders.map((id) => member(id));

function member(id: NodeId): StoredAddress {
  const found = members.get(id);
  if (found === undefined) throw new Error(`no address for ${id}`);
  return found;
}

/** What the config file of `id` lists: the founders, and itself when it joined later. */
function configured(id: NodeId): StoredAddress[] {
  return founders.includes(id) ? founding() : [...founding(), member(id)];
}

/** Starts `id` on `storage`, with a transport and a static address list that know only `known`. */
async function startNode(
  id: NodeId,
  storage: WritableStorage,
  known: readonly StoredAddress[],
  seed: number,
): Promise<DlmNode> {
  const transport = await GrpcTransport.start({
    id,
    listenAddress: member(id).peerAddress,
    peers: new Map(known.map((entry) => [entry.id, entry.peerAddress])),
    queueMessagesMax: 10_000,
    batchMessagesMax: 256,
    reconnectDelayMsMin: 20,
    reconnectDelayMsMax: 200,
  });
  const node = new DlmNode(id, storage, transport, OPTIONS, undefined, seed);
  node.start();
  // As startApiServer does with the config file's nodes.
  node.learnAddresses(known);
  running.set(id, node);
  return node;
}

async function stopAll(): Promise<void> {
  await Promise.all([...running.values()].map((node) => node.stop()));
  running.clear();
}

/**
 * The addresses this store loaded are hidden from the node, and what it saves is
 * dropped: a node as it was before the book was saved.
 */
function forgetful(storage: LevelStorage): WritableStorage {
  return new Proxy(storage, {
    get(target, property) {
      if (property === 'savedAddresses') return [];
      if (property === 'saveAddresses') return async () => {};
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function leaderAmong(ids: readonly NodeId[]): DlmNode | undefined {
  return ids.map((id) => running.get(id)).find((node) => node?.status().role === 'leader');
}

async function leader(ids: readonly NodeId[]): Promise<DlmNode> {
  await until(() => leaderAmong(ids) !== undefined, `one of ${ids.join(', ')} leads`);
  return leaderAmong(ids) as DlmNode;
}

/**
 * Runs a membership call on the leader. UNAVAILABLE (a leader that hands over before
 * its own removal, or a change lost to an election) is retried where its hint points,
 * or at whoever leads then.
 */
async function onLeader(
  ids: readonly NodeId[],
  call: (leader: DlmNode) => Promise<unknown>,
): Promise<void> {
  let via = await leader(ids);
  for (let attempt = 0; ; attempt++) {
    try {
      await call(via);
      return;
    } catch (error) {
      if (!(error instanceof DlmError) || error.code !== 'UNAVAILABLE' || attempt >= 20) {
        throw error;
      }
      const hinted = error.leaderHint === null ? undefined : running.get(error.leaderHint);
      via = hinted ?? (await leader(ids));
    }
  }
}

async function openSession(via: DlmNode, requestId: string): Promise<LockResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await via.write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'g', requestId }))
        .result;
    } catch (error) {
      if (!(error instanceof DlmError) || attempt >= 100) throw error;
      await sleep(20);
    }
  }
}

describe('member addresses saved in the database', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dlm-saved-addresses-'));
    for (const id of [...founders, ...joiners]) {
      members.set(id, { id, peerAddress: `127.0.0.1:${await freePort()}`, clientAddress: '' });
    }
    for (const [i, id] of founders.entries()) {
      const storage = await LevelStorage.open(dataDir(id), {
        bootstrap: { voters: founders, learners: [] },
      });
      await startNode(id, storage, configured(id), i + 1);
    }
    for (const [i, id] of joiners.entries()) {
      const storage = await LevelStorage.open(dataDir(id), { bootstrap: 'join' });
      await startNode(id, storage, configured(id), i + 4);
    }

    // Grow to five, then shrink to the two that joined, one change at a time: removing
    // the leader answers UNAVAILABLE, pointing at the node it handed over to.
    const all = [...founders, ...joiners];
    for (const id of joiners) {
      await onLeader(all, (via) => via.addMember(member(id), { timeoutMs: 15_000 }));
    }
    for (const id of founders) {
      await onLeader(all, (via) => via.removeMember(id, { timeoutMs: 10_000 }));
    }
    await until(
      () => joiners.every((id) => running.get(id)?.status().voters.join() === joiners.join()),
      'n4 and n5 see themselves as the only voters',
    );
    expect((await openSession(await leader(joiners), 'before-stop')).type).toBe('SessionOpened');
    await stopAll();
  });

  afterEach(stopAll);

  afterAll(async () => {
    await stopAll();
    await rm(root, { recursive: true, force: true });
  });

  it('n4 and n5, whose config files name only the founders, find each other after a full stop', async () => {
    for (const [i, id] of joiners.entries()) {
      const storage = await LevelStorage.open(dataDir(id));
      // Each saved where the other is, though its config file does not say.
      const other = joiners.find((joiner) => joiner !== id) as NodeId;
      expect(storage.savedAddresses).toContainEqual(member(other));
      await startNode(id, storage, configured(id), i + 10);
    }

    const elected = await leader(joiners);
    expect(elected.status().voters).toEqual(joiners);
    expect((await openSession(elected, 'after-restart')).type).toBe('SessionOpened');
  });

  it('without the saved addresses they never elect a leader', async () => {
    for (const [i, id] of joiners.entries()) {
      const storage = forgetful(await LevelStorage.open(dataDir(id)));
      await startNode(id, storage, configured(id), i + 20);
    }

    // A bounded watch: the other node is unreachable, so no quorum of 2 can form.
    const deadline = performance.now() + NO_LEADER_WATCH_MS;
    while (performance.now() < deadline) {
      for (const id of joiners) {
        const node = running.get(id) as DlmNode;
        expect(node.status().role).not.toBe('leader');
        expect(node.memberAddresses().has(id === N4 ? N5 : N4)).toBe(false);
      }
      await sleep(20);
    }
  });
});

describe('how a node saves its address book', () => {
  const self = nodeId('s1');
  const entry = (id: string, port: number): StoredAddress => ({
    id: nodeId(id),
    peerAddress: `127.0.0.1:${port}`,
    clientAddress: `127.0.0.1:${port + 1000}`,
  });

  /**
   * A one-voter store that records every save and holds each until `release` (or
   * fails it, while `failing` is above zero), and records when it is closed.
   */
  function recordingStorage() {
    const inner = MemoryWritableStorage.bootstrap({ voters: [self], learners: [] });
    const events: string[] = [];
    const held: Array<() => void> = [];
    const control = { saves: [] as StoredAddress[][], failing: 0, holding: false };
    const storage = new Proxy(inner, {
      get(target, property) {
        if (property === 'saveAddresses') {
          return async (addresses: readonly StoredAddress[]) => {
            control.saves.push([...addresses]);
            if (control.holding) await new Promise<void>((resolve) => held.push(resolve));
            if (control.failing > 0) {
              control.failing--;
              throw new Error('EIO');
            }
            await target.saveAddresses(addresses);
            events.push('saved');
          };
        }
        if (property === 'close') {
          return async () => {
            events.push('closed');
            await target.close();
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const release = (): void => {
      control.holding = false;
      for (const resolve of held.splice(0)) resolve();
    };
    return { inner, storage, control, events, release };
  }

  function nodeOn(storage: WritableStorage): DlmNode {
    return new DlmNode(self, storage, new MemoryNetwork().connect(self), OPTIONS, undefined, 1);
  }

  it('loading the saved book is no change; a burst is one save, and changes during a save one more', async () => {
    const { inner, storage, control, release } = recordingStorage();
    await inner.saveAddresses([entry('s1', 7001), entry('s2', 7002)]);
    const node = nodeOn(storage);
    node.start();
    await sleep(20);
    expect(control.saves).toEqual([]);
    expect(node.memberAddresses().get(nodeId('s2'))).toEqual(entry('s2', 7002));

    control.holding = true;
    // One call that changes three entries: one save, of the whole book.
    node.learnAddresses([entry('s1', 7101), entry('s3', 7003), entry('s4', 7004)]);
    await until(() => control.saves.length === 1, 'the first save starts');
    expect(control.saves[0]?.map((saved) => saved.id)).toEqual(['s1', 's2', 's3', 's4']);
    // Three separate changes while it is held: one more save, after it.
    for (const port of [7005, 7006, 7007]) node.learnAddresses([entry('s5', port)]);
    await sleep(20);
    expect(control.saves).toHaveLength(1);
    release();

    await until(() => control.saves.length === 2, 'the coalesced save');
    await node.stop();
    expect(control.saves).toHaveLength(2);
    expect(inner.savedAddresses).toEqual([
      entry('s1', 7101),
      entry('s2', 7002),
      entry('s3', 7003),
      entry('s4', 7004),
      entry('s5', 7007),
    ]);
  });

  it('a failed save stops the node, as a failed Raft write does', async () => {
    // A failed write may leave a torn record in LevelDB's log, after which the writes it
    // still takes can be lost at the next open (test/storage/disk-full.test.ts): the
    // node must not go on writing, and so acknowledging, after one.
    const { storage, control } = recordingStorage();
    const node = nodeOn(storage);
    const failures: Error[] = [];
    node.observe({ failed: (error) => failures.push(error) });
    node.start();
    await until(() => node.status().role === 'leader', 'the node leads');
    control.failing = 1;

    node.learnAddresses([entry('s1', 7001), entry('s2', 7002)]);
    await until(() => failures.length === 1, 'the node stops on the failure');
    expect(String(failures[0])).toContain('EIO');
    expect(node.running).toBe(false);
    await expect(
      node.write({ type: 'OpenSession', ttlMs: 1_000, clientName: 'x', requestId: 'r1' }),
    ).rejects.toThrow(/stopped: EIO/);
    await node.stop();
    expect(control.saves).toHaveLength(1);
  });

  it('stop waits for a save in flight before it closes storage', async () => {
    const { storage, control, events, release } = recordingStorage();
    const node = nodeOn(storage);
    node.start();
    control.holding = true;
    node.learnAddresses([entry('s2', 7002)]);
    await until(() => control.saves.length === 1, 'the save starts');

    const stopping = node.stop();
    await sleep(50);
    expect(events).toEqual([]);
    release();
    await stopping;

    expect(events).toEqual(['saved', 'closed']);
  });
});
