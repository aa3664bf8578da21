/**
 * A follower cut off while the leader snapshots and compacts past it catches up by
 * InstallSnapshot whose data the leader no longer holds (a forced collection dropped it,
 * src/storage/snapshot-read.ts) and reads back from disk in the background, never with
 * its event loop held. Three nodes on real LevelDB, an in-process network.
 */
import { Level } from 'level';
import { afterEach, expect, it, vi } from 'vitest';
import { encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import type { DlmNode } from '../../src/node/node.ts';
import { type CompactedAway, followerCompactedAway, until } from '../support/compacted-follower.ts';

let cluster: CompactedAway | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await cluster?.remove();
  cluster = null;
});

it('a cut-off follower installs the leader snapshot, read back from disk in the background', async () => {
  cluster = await followerCompactedAway(400, 300);
  const { network, nodes, cut, leader: lead, leaderStorage: ls } = cluster;
  const level = Level.prototype as unknown as Record<'_getSync', (...args: unknown[]) => unknown>;
  const getSync = vi.spyOn(level, '_getSync');
  const iterators = vi.spyOn(
    Level.prototype as unknown as Record<'_iterator', (...args: unknown[]) => unknown>,
    '_iterator',
  );
  network.heal();
  const follower = nodes.get(cut) as DlmNode;
  await until(
    () => follower.status().appliedIndex >= lead.status().commitIndex || undefined,
    'the follower to catch up',
  );
  // Read in the background, through an iterator (the only one any node opened), and
  // nothing read it with the event loop held.
  expect(iterators).toHaveBeenCalledTimes(1);
  expect(getSync).not.toHaveBeenCalled();
  expect(ls.snapshotDataBytes()).toBeGreaterThan(0);
  expect(follower.status().role).toBe('follower');
  expect(Buffer.from(encodeLockSnapshot(follower.locks.snapshot()))).toEqual(
    Buffer.from(encodeLockSnapshot(lead.locks.snapshot())),
  );
}, 60_000);
