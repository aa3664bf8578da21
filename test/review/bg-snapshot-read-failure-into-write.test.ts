/**
 * Review of 78cc636. A leader's background read of its snapshot data fails (the store
 * keeps the failure and "throws to the next caller that wants the data", so that "the
 * node then stops, as on any storage failure"). The next caller is whatever calls
 * LeaderReplication.sendAppend for the lagging follower next. On a leader taking writes
 * that is a client write: raft.propose -> appendAsLeader -> broadcastAppend. That path is
 * outside the node's failure handling (receive / the Ready loop catch and stopOnFailure;
 * proposeLocal does not): the write rejects with the raw storage error, the node keeps
 * running as leader with the entry half-broadcast, and the write's registered proposal
 * is left unobserved, so the node's later failAll rejects it unhandled.
 * Three nodes on real LevelDB, in-process network (as test/node/snapshot-transfer-from-disk).
 *
 * FAILED on 78cc636 (the raw injected error out of write(), the node still leading).
 * Since the fix a failed background read is never thrown into the core: the store keeps
 * it like a failed write's, so the write's own persist is refused and the node stops.
 */
import { Level } from 'level';
import { afterEach, expect, it, vi } from 'vitest';
import { DlmError } from '../../src/node/errors.ts';
import { nodeId } from '../../src/util/ids.ts';
import { type CompactedAway, followerCompactedAway, until } from '../support/compacted-follower.ts';

const IDS = ['n1', 'n2', 'n3'].map(nodeId);
let cluster: CompactedAway | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await cluster?.remove();
  cluster = null;
});

it('a failed background snapshot read stops the node, not a client write', async () => {
  cluster = await followerCompactedAway(200, 150);
  const { network, cut, leader: lead } = cluster;

  // The background read fails (a damaged disk, say). The follower that asked for it is
  // gone again at once (a flapping link), so its heartbeat answers do not ask again.
  let reads = 0;
  vi.spyOn(
    Level.prototype as unknown as Record<'_iterator', () => unknown>,
    '_iterator',
  ).mockImplementation(() => {
    reads++;
    network.isolate(cut, IDS);
    throw new Error('injected: the disk failed under the background read');
  });
  network.heal();
  await until(() => reads > 0 || undefined, 'the background read');
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(lead.running).toBe(true); // nothing asked again yet

  // A client write on the leader: it must fail as the node's failure (INTERNAL, the
  // node stopped), not carry the storage error out of the core half-way through a step.
  let error: unknown = null;
  try {
    await lead.write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'late', requestId: 'late' });
  } catch (caught) {
    error = caught;
  }
  // On 78cc636: the raw Error('injected: ...') thrown out of raft.propose, the node still
  // leading, and one election timeout later the write's orphaned proposal rejected with
  // no one listening (an unhandled rejection: in production, the process dies of it).
  expect(error).toBeInstanceOf(DlmError);
  expect((error as DlmError).code).toBe('INTERNAL');
  expect(lead.running).toBe(false);
}, 60_000);
