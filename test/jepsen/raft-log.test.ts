import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LIMITS, type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import { decodeEntry, encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import type { Entry } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/index.ts';
import { LogArchive } from '../../src/tools/jepsen/log-archive.ts';
import { readCommittedLog, requestKey } from '../../src/tools/jepsen/raft-log.ts';
import { fencingToken, logIndex, sessionId, term } from '../../src/util/ids.ts';
import { BOOTSTRAP, LogDirs, normal } from './log-dirs.ts';

/**
 * The ground truth the Jepsen checker trusts: real LevelDB directories written with the
 * project's storage, read back, checked for agreement and replayed.
 */
const dirs = new LogDirs();
afterEach(() => dirs.removeAll());
const node = (id: string, entries: readonly Entry[], commit: number) =>
  dirs.node(id, entries, commit);

const acquire = (session: number, owner: string, waitMs: number): LockCommand => ({
  type: 'Acquire',
  lock: 'L',
  sessionId: sessionId(session),
  mode: 'exclusive',
  waitMs,
  requestId: `r-${owner}`,
  owner,
  maxHoldMs: 0,
  lockDelayMs: 0,
});

/** Entries 2..6: two sessions; 2 takes L, 3 queues for it, 2 releases (3 gets it). */
const LOG: Entry[] = [
  normal(2, { type: 'OpenSession', ttlMs: 3_000, clientName: 'a', requestId: 'o1' }),
  normal(3, { type: 'OpenSession', ttlMs: 3_000, clientName: 'b', requestId: 'o2' }),
  normal(4, acquire(2, 'a#0', 0)),
  normal(5, acquire(3, 'b#1', 1_000)),
  normal(6, {
    type: 'Release',
    lock: 'L',
    sessionId: sessionId(2),
    token: fencingToken(4),
    requestId: 'rel',
  }),
  { kind: 'noop', term: term(2), index: logIndex(7) },
];

describe('reading the committed log from the nodes', () => {
  it('replays every grant with its owner, token and end, and places requests', async () => {
    const n1 = await node('n1', LOG, 7);
    const n2 = await node('n2', LOG.slice(0, 3), 4); // behind: holds 2..4, committed to 4
    const log = await readCommittedLog(
      [
        { id: 'n1', path: n1 },
        { id: 'n2', path: n2 },
      ],
      0,
    );
    expect(log.problems).toEqual([]);
    expect(log.commitIndex).toBe(7);
    expect(log.startIndex).toBe(1);
    const grants = log.grants.map((g) => [g.owner, g.sessionId, g.token, g.index, g.endIndex]);
    // The Release hands the lock to the waiter in the same entry: token 6.
    expect(grants).toEqual([
      ['a#0', '2', '4', 4, 6],
      ['b#1', '3', '6', 6, null],
    ]);
    expect(log.grants[0]?.endReason).toBe('release');
    expect(log.requests.get(requestKey('Acquire', '2', 'r-a#0'))).toEqual([4]);
    expect(log.requests.get(requestKey('Acquire', '3', 'r-b#1'))).toEqual([5]);
    expect(log.requests.get(requestKey('Release', '2', 'rel'))).toEqual([6]);
    expect(log.requests.get(requestKey('OpenSession', '', 'o1'))).toEqual([2]);
    expect(log.results.get(5)?.type).toBe('Queued');
    expect(log.results.get(6)?.type).toBe('Released');
    expect(log.results.has(7)).toBe(false); // a Raft no-op is no lock command
    for (const g of log.grants) expect(g.token).toBe(String(g.index));
    // n2's disk holds committed entries 2..4, each compared with n1's.
    expect(log.agreement).toEqual({ smallestCommitIndex: 4, comparisons: 3 });
  });

  it('replays with the file rules until a SetRules entry, then with the log rules, as nodes do', async () => {
    // A TTL of 2 s: under the nodes' file rules (minimum 2.5 s) refused, under the
    // rules the SetRules at 3 puts in force (minimum 1 s) accepted.
    const open = (requestId: string): LockCommand => ({
      type: 'OpenSession',
      ttlMs: 2_000,
      clientName: 'a',
      requestId,
    });
    const entries = [
      normal(2, open('before')),
      normal(3, {
        type: 'SetRules',
        rules: DEFAULT_LOCK_LIMITS,
        onlyIfUnset: true,
      }),
      normal(4, open('after')),
    ];
    const n1 = await node('n1', entries, 4);
    const log = await readCommittedLog([{ id: 'n1', path: n1 }], 0, { sessionTtlMsMin: 2_500 });
    expect(log.results.get(2)).toMatchObject({ type: 'Rejected', code: 'invalidArgument' });
    expect(log.results.get(4)).toMatchObject({ type: 'SessionOpened', ttlMs: 2_000 });
    // Replayed with the default rules instead, the first open would have succeeded.
    const defaults = await readCommittedLog([{ id: 'n1', path: n1 }], 0);
    expect(defaults.results.get(2)).toMatchObject({ type: 'SessionOpened' });
  });

  it('stops at the commit index it is told of, past what the disks say', async () => {
    const n1 = await node('n1', LOG, 4);
    const log = await readCommittedLog([{ id: 'n1', path: n1 }], 6);
    expect(log.commitIndex).toBe(6);
    expect(log.grants.map((g) => [g.index, g.endIndex])).toEqual([
      [4, 6],
      [6, null],
    ]);
  });

  /** n1 holds LOG committed to 7, with a snapshot at 5; compacted behind it or not. */
  async function snapshotAtFive(compact: boolean): Promise<string> {
    const dir = dirs.make();
    const storage = await LevelStorage.open(join(dir, 'n1'), { bootstrap: BOOTSTRAP });
    await storage.persist({
      entries: LOG,
      hardState: { term: term(2), votedFor: null, commitIndex: logIndex(7) },
    });
    const machine = new LockStateMachine();
    machine.skipTo(logIndex(1));
    for (const entry of LOG.slice(0, 4)) {
      if (entry.kind !== 'normal') continue;
      const { command, proposalId } = decodeEntry(entry.data);
      machine.apply(entry.index, command, proposalId);
    }
    await storage.createSnapshot(logIndex(5), BOOTSTRAP, encodeLockSnapshot(machine.snapshot()));
    if (compact) await storage.compact(logIndex(5));
    await storage.close();
    return join(dir, 'n1');
  }

  it('starts from the earliest snapshot when every node compacted its log', async () => {
    const log = await readCommittedLog([{ id: 'n1', path: await snapshotAtFive(true) }], 0);
    expect(log.startIndex).toBe(5);
    expect(log.problems).toEqual([]);
    // a's grant was live in the snapshot; the Release at 6 ends it and grants b.
    expect(log.grants.map((g) => [g.owner, g.source, g.index, g.endIndex])).toEqual([
      ['a#0', 'snapshot', 4, 6],
      ['b#1', 'log', 6, null],
    ]);
    expect(log.requests.has(requestKey('Acquire', '2', 'r-a#0'))).toBe(false);
  });

  it('replays from the bootstrap when a node kept its whole log behind its snapshot', async () => {
    const log = await readCommittedLog([{ id: 'n1', path: await snapshotAtFive(false) }], 0);
    expect(log.startIndex).toBe(1);
    expect(log.problems).toEqual([]);
    expect(log.grants.map((g) => [g.owner, g.source, g.index, g.endIndex])).toEqual([
      ['a#0', 'log', 4, 6],
      ['b#1', 'log', 6, null],
    ]);
    expect(log.requests.has(requestKey('Acquire', '2', 'r-a#0'))).toBe(true);
  });

  it('replays from the bootstrap through the copy of a wiped node (log-archive.ts), else from the snapshot', async () => {
    const compacted = await snapshotAtFive(true); // holds 6..7 behind a snapshot at 5
    const archive = new LogArchive(join(dirs.make(), 'archive'));
    // n2 held 2..5 when the membership nemesis was about to wipe it.
    await archive.beforeWipe('n2', await node('n2', LOG.slice(0, 4), 5));
    const nodes = [{ id: 'n1', path: compacted }, ...archive.directories()];
    const log = await readCommittedLog(nodes, 0);
    expect(log.startIndex).toBe(1);
    expect(log.problems).toEqual([]);
    expect(log.requests.get(requestKey('Acquire', '2', 'r-a#0'))).toEqual([4]);
    expect(log.grants.map((g) => [g.owner, g.source, g.index, g.endIndex])).toEqual([
      ['a#0', 'log', 4, 6],
      ['b#1', 'log', 6, null],
    ]);
    // A copy that stops at 3 leaves entry 4 on no disk (n1 kept 5 on): the snapshot is
    // where the replay starts then.
    const short = new LogArchive(join(dirs.make(), 'archive'));
    await short.beforeWipe('n2', await node('n2', LOG.slice(0, 2), 3));
    const gap = await readCommittedLog([{ id: 'n1', path: compacted }, ...short.directories()], 0);
    expect(gap.startIndex).toBe(5);
    expect(gap.problems).toEqual([]);
  });

  it('keeps one copy per first index, the one committed furthest', async () => {
    const archive = new LogArchive(join(dirs.make(), 'archive'));
    await archive.beforeWipe('n1', await node('n1', LOG.slice(0, 3), 4));
    await archive.beforeWipe('n2', await node('n2', LOG, 7));
    await archive.beforeWipe('n3', await node('n3', LOG.slice(0, 4), 5));
    await archive.beforeWipe('n4', join(dirs.make(), 'never-ran'));
    expect(archive.directories().map((d) => d.id)).toEqual(['archive:n2-2']);
  });

  it('ignores an uncommitted suffix a node kept (a deposed leader, a follower stopped early)', async () => {
    const n1 = await node('n1', LOG, 7);
    // n2, leader of term 2 for a moment, appended its own entry at 5 and was deposed; a
    // later leader committed the term-1 entry there. n2's commit index (4) does not cover 5.
    const n2 = await node('n2', [...LOG.slice(0, 3), normal(5, acquire(3, 'x#9', 0), 2)], 4);
    const log = await readCommittedLog(
      [
        { id: 'n1', path: n1 },
        { id: 'n2', path: n2 },
      ],
      0,
    );
    expect(log.problems).toEqual([]);
    expect(log.requests.has(requestKey('Acquire', '3', 'r-x#9'))).toBe(false);
    expect(log.requests.get(requestKey('Acquire', '3', 'r-b#1'))).toEqual([5]);
  });

  it('reports nodes that disagree on a committed entry, and a committed entry nobody has', async () => {
    const n1 = await node('n1', LOG, 7);
    const other = [...LOG.slice(0, 3), normal(5, acquire(3, 'x#9', 0), 2)];
    const n2 = await node('n2', other, 5);
    const disagree = await readCommittedLog(
      [
        { id: 'n1', path: n1 },
        { id: 'n2', path: n2 },
      ],
      0,
    );
    expect(disagree.problems).toHaveLength(1);
    expect(disagree.problems[0]).toContain('nodes disagree at committed index 5');
    expect(disagree.problems[0]).toContain('both count it committed');

    const missing = await readCommittedLog([{ id: 'n1', path: n1 }], 9);
    expect(missing.problems).toEqual(["committed index 8 (commit 9) is on no node's disk"]);
  });
});
