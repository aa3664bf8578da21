/**
 * What a client is told about a write its node forwards to the leader (WriteForwarding):
 * the leader's refusals, word for word and with their codes, a forward left unanswered,
 * and a follower that knows no leader. Written by the review of the move of forwarding
 * out of node.ts (59dd5c6); it passed before and after it. It fails when a refusal's
 * code changes (checked: tooManyUncommitted as UNAVAILABLE).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { continueTrace } from '../../src/node/trace.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ids, OPTIONS, sleep, until } from '../node/cluster-harness.ts';

let nodes: DlmNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

function start(network: MemoryNetwork, holdRules: boolean): DlmNode[] {
  nodes = ids.map((id, i) => {
    const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
    const node = new DlmNode(id, storage, network.connect(id), OPTIONS, undefined, i + 1);
    if (holdRules) Reflect.set(node, 'proposeRulesIfUnset', () => false);
    node.start();
    return node;
  });
  return nodes;
}

async function roles(holdRules: boolean): Promise<{ leader: DlmNode; follower: DlmNode }> {
  await until(() => nodes.some((n) => n.status().role === 'leader'), 'a leader');
  const leader = nodes.find((n) => n.status().role === 'leader') as DlmNode;
  if (!holdRules) await until(() => leader.locks.rulesSetIndex !== null, 'rules set');
  const follower = nodes.find((n) => n !== leader) as DlmNode;
  await until(() => follower.status().leaderId === leader.id, 'follower knows leader');
  return { leader, follower };
}

const open = (requestId: string): LockCommand => ({
  type: 'OpenSession',
  ttlMs: 5_000,
  clientName: requestId,
  requestId,
});

function told(error: unknown): string {
  return error instanceof DlmError
    ? `${error.code} ${error.message} ${error.leaderHint}`
    : `${error}`;
}

describe('what a forwarded write is told', () => {
  it('rules hold-back: refusal, trace outcome to a late observer, and a Reflect.set override', async () => {
    const network = new MemoryNetwork();
    start(network, true);
    const { leader, follower } = await roles(true);
    const seen: string[] = [];
    // Added after construction and start: must still be seen.
    leader.observe({ forwardedWrite: (_t, from, outcome) => seen.push(`${from} ${outcome}`) });
    const refused = await follower
      .write(open('early'), { trace: continueTrace(null) })
      .then(() => 'applied', told);
    expect(refused).toBe(
      `UNAVAILABLE lock rules not yet agreed: the leader takes writes once the log has set them (right after an election on a new cluster); retry ${leader.id}`,
    );
    const local = await leader.write(open('early-local')).then(() => 'applied', told);
    expect(local).toBe(refused);
    expect(seen).toEqual([`${follower.id} lockRulesUnset`]);
    // A test breaks the hold-back on the instance: forwarded writes must see it.
    Reflect.set(leader, 'lockRulesUnset', () => false);
    const taken = await follower.write(open('late'), { trace: continueTrace(null) });
    expect(taken.result.type).toBe('SessionOpened');
    expect(seen).toEqual([`${follower.id} lockRulesUnset`, `${follower.id} proposed`]);
  });

  it("refusal reasons from the leader tell the follower's client the same", async () => {
    const network = new MemoryNetwork();
    start(network, false);
    const { leader, follower } = await roles(false);
    const answers: string[] = [];
    for (const reason of [
      'tooManyUncommitted',
      'transferringLeadership',
      'lockRulesUnset',
    ] as const) {
      let forward: PeerMessage | null = null;
      network.hold((m) => {
        if (m.kind === 'forward' && forward === null) forward = m;
        return m.kind === 'forward';
      });
      const writing = follower.write(open(`r-${reason}`)).then(() => 'applied', told);
      await until(() => forward !== null, 'the forward');
      const f = forward as unknown as { proposalId: string };
      network.hold(() => false);
      // Answer in the leader's name (an unlinked sender; no onMessage, so no handler stolen).
      network.connect(leader.id).send({
        kind: 'forwardRefused',
        from: leader.id,
        to: follower.id,
        proposalId: f.proposalId,
        reason,
        leaderId: leader.id,
      });
      answers.push(await writing);
      network.releaseHeld();
      await sleep(20);
    }
    expect(answers).toEqual([
      `RESOURCE_EXHAUSTED the leader has too many uncommitted writes ${leader.id}`,
      `UNAVAILABLE the write was refused: transferringLeadership ${leader.id}`,
      `UNAVAILABLE lock rules not yet agreed: the leader takes writes once the log has set them (right after an election on a new cluster); retry ${leader.id}`,
    ]);
  });

  it('an unanswered forward fails UNAVAILABLE after an election timeout, naming it', async () => {
    const network = new MemoryNetwork();
    start(network, false);
    const { follower } = await roles(false);
    network.hold((m) => m.kind === 'forward');
    const began = Date.now();
    const answer = await follower.write(open('lost')).then(() => 'applied', told);
    const waited = Date.now() - began;
    network.hold(() => false);
    expect(answer).toBe(
      'UNAVAILABLE the leader did not answer a forwarded write within 100 ms null',
    );
    expect(waited).toBeGreaterThanOrEqual(90);
    expect(waited).toBeLessThan(1_500);
  });

  it('a follower that knows no leader refuses at once', async () => {
    const network = new MemoryNetwork();
    const [only] = start(network, false) as [DlmNode];
    // Before any election: nobody is leader yet.
    const answer = await only.write(open('nobody')).then(() => 'applied', told);
    expect(answer).toBe(`UNAVAILABLE ${only.id} knows no leader null`);
  });
});

void (null as unknown as NodeId);
