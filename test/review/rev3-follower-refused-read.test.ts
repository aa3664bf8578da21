/**
 * Review of cf06c8a/4dae8c9: "only a read that ran out of time counts as a loss, not one
 * refused at once" holds at the leader only. At a follower, a read the LEADER refuses at
 * once (its read queue full: pendingReadsMax; or a ReadIndexRequest reaching a node that
 * no longer leads) comes back as a ReadIndexResponse with readIndex null, which
 * Raft.stepFollower drops without a word (src/raft/raft.ts 'ReadIndexResponse'). The
 * node's read then waits out proposalTimeoutMs and fails DEADLINE_EXCEEDED, which
 * EventHub.confirmLeader tells as "could not confirm it follows the leader": a healthy
 * follower, fully applied, ends every Observe stream it serves whenever the leader is
 * busy. (Describe/Leader/ValidateFence at that follower likewise hang proposalTimeoutMs
 * and answer DEADLINE_EXCEEDED instead of an immediate UNAVAILABLE.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import { ApiCluster, eventually, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;

afterEach(async () => {
  cluster?.network.heal();
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

describe('rev3: a busy leader ends the Observe streams of its healthy followers', () => {
  // Was an expected failure: the core dropped the leader's refusal, so the follower's
  // read failed only at its deadline. The core now hands refused reads to the host
  // (Ready.refusedReads), which fails them UNAVAILABLE at once; a confirmation that is
  // refused does not end the streams.
  it('a follower whose confirm the leader refuses for load keeps its streams', async () => {
    const started = await ApiCluster.start(
      { observeConfirmIntervalMs: 50 },
      {
        proposalTimeoutMs: 500,
        raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, pendingReadsMax: 2 },
      },
    );
    cluster = started;
    await eventually(() =>
      [...started.nodes.values()].every(
        (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
      ),
    );
    const leader = await started.leaderId();
    const follower = await started.followerId();
    const leaderNode = started.nodes.get(leader);
    const followerNode = started.nodes.get(follower);
    if (leaderNode === undefined || followerNode === undefined) throw new Error('no node');
    const open = started.at(follower).lock.stream('Observe', { election: 'rev3/busy' });
    const first = new Promise((resolve) => open.once('data', resolve));
    let endedWith: { code: number; details: string } | null = null;
    open.on('data', () => {});
    open.on('error', (error: { code: number; details: string }) => {
      endedWith = error;
    });
    await first;
    // The same read load as rev-oc2-confirm-false-loss (b), at the leader.
    let loading = true;
    const load = (async () => {
      while (loading) {
        await Promise.allSettled(Array.from({ length: 8 }, () => leaderNode.read(() => null)));
      }
    })();
    for (let i = 0; i < 60 && endedWith === null; i++) await sleep(50);
    loading = false;
    await load;
    const view = followerNode.status();
    console.log(
      'follower',
      follower,
      view.leaderId,
      view.appliedIndex,
      'leader commit',
      leaderNode.status().commitIndex,
      'ended',
      endedWith,
    );
    // The follower is healthy: it knows the leader and applied everything.
    expect(view.leaderId).toBe(leader);
    expect(view.appliedIndex).toBe(leaderNode.status().commitIndex);
    // Failed before the fix: UNAVAILABLE "<follower> could not confirm it follows the
    // leader (read ... was not confirmed in time)" although the leader had refused it.
    expect(endedWith).toBeNull();
    open.cancel();
  }, 20_000);
});
