import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  IDS,
  NODE_OPTIONS,
  type NodeEndpoints,
  RpcError,
  retrying,
  rpcError,
  serve,
  sleep,
} from './harness.ts';

/**
 * dlm.v1.Cluster's membership RPCs against in-process nodes, through real gRPC
 * clients: grow 3 → 5 and shrink back while a client keeps taking and releasing
 * locks, remove the leader itself, hand leadership over, and each refusal's status.
 */
const N4 = nodeId('n4');
const N5 = nodeId('n5');

let cluster: ApiCluster | null = null;

afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

/** Starts an empty node that waits to be added, serving the API like the others. */
async function startJoining(c: ApiCluster, id: NodeId, seed: number): Promise<NodeEndpoints> {
  const node = new DlmNode(
    id,
    MemoryWritableStorage.joining(),
    c.network.connect(id),
    NODE_OPTIONS,
    undefined,
    seed,
  );
  node.start();
  c.nodes.set(id, node);
  const endpoints = await serve(node, c.logs);
  c.endpoints.set(id, endpoints);
  return endpoints;
}

/** The leader as seen by the voters in `among` (a joining node knows none yet). */
async function leaderAmong(c: ApiCluster, among: readonly NodeId[]): Promise<NodeId> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const views = among.map((id) => c.nodes.get(id)?.status().leaderId ?? null);
    const [first] = views;
    if (first && among.includes(first) && views.every((view) => view === first)) return first;
    await sleep(10);
  }
  throw new Error(`no leader agreed among ${among.join(', ')}`);
}

// biome-ignore lint/suspicious/noExplicitAny: responses are checked by the tests themselves
type Wire = any;

/** Calls a Cluster method on the leader, following leader changes as a client does. */
async function onLeader(
  c: ApiCluster,
  among: readonly NodeId[],
  method: string,
  request: object,
): Promise<Wire> {
  for (let attempt = 1; ; attempt++) {
    const leader = await leaderAmong(c, among);
    try {
      return await c.at(leader).cluster.call(method, request, { deadlineMs: 15_000 });
    } catch (error) {
      if (!(error instanceof RpcError) || error.code !== grpc.status.UNAVAILABLE || attempt >= 20)
        throw error;
      await sleep(50);
    }
  }
}

async function statusOf(c: ApiCluster, id: NodeId) {
  return c.at(id).cluster.call('Status', {});
}

function voterIds(status: { members: { id: string; learner: boolean }[] }): string[] {
  return status.members
    .filter((member) => !member.learner)
    .map((member) => member.id)
    .sort();
}

interface Grant {
  readonly lock: string;
  readonly token: string;
  readonly released: boolean;
}

/**
 * Acquires `load/<i>` through the founding nodes in turn, releasing every other grant,
 * until stopped. A grant is recorded once its iteration finished, so what it says is
 * settled: held for good, or released.
 */
function clientLoop(c: ApiCluster, session: string) {
  const grants: Grant[] = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const via = IDS[i % IDS.length] as NodeId;
      const lock = `load/${i}`;
      const acquireId = c.requestId();
      const acquired = await retrying(() =>
        c.at(via).lock.call('Acquire', {
          lock,
          session_id: session,
          request_id: acquireId,
          wait_ms: '0',
        }),
      );
      expect(acquired.acquired).toBe(true);
      const token = acquired.fencing_token as string;
      const release = i % 2 === 0;
      if (release) {
        const releaseId = c.requestId();
        const released = await retrying(() =>
          c.at(via).lock.call('Release', {
            lock,
            session_id: session,
            fencing_token: token,
            request_id: releaseId,
          }),
        );
        expect(released.released).toBe(true);
      }
      grants.push({ lock, token, released: release });
    }
  })();
  return {
    grants,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** Every settled grant reads back as it was acknowledged, through `via`. */
async function expectGrants(c: ApiCluster, via: NodeId, grants: readonly Grant[]): Promise<void> {
  for (const grant of grants) {
    const described = await retrying(() => c.at(via).lock.call('Describe', { lock: grant.lock }));
    const tokens = described.holders.map(
      (holder: { fencing_token: string }) => holder.fencing_token,
    );
    expect(tokens, `${grant.lock} through ${via}`).toEqual(grant.released ? [] : [grant.token]);
  }
}

describe('Cluster membership', () => {
  it('grows 3 → 5 and shrinks back to 3 while a client keeps acquiring and releasing', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const session = await c.openSession(IDS[0] as NodeId, 120_000);
    const load = clientLoop(c, session);
    await eventually(() => load.grants.length >= 5);

    const joining = [N4, N5];
    for (const [position, id] of joining.entries()) {
      await startJoining(c, id, 10 + position);
      const answer = await onLeader(c, IDS, 'AddMember', {
        node_id: id,
        peer_address: `10.0.0.${4 + position}:7000`,
        client_address: `10.0.0.${4 + position}:7001`,
      });
      expect(answer.members.find((member: { id: string }) => member.id === id)).toEqual({
        id,
        peer_address: `10.0.0.${4 + position}:7000`,
        client_address: `10.0.0.${4 + position}:7001`,
        learner: false,
      });
    }
    const all = [...IDS, ...joining];
    const fiveVoters = [...all].sort();
    // Every node, the new ones included, sees 5 voters and no learner, and knows where
    // the new members are (the leader told them).
    await eventually(async () => {
      for (const id of all) {
        const status = await statusOf(c, id);
        if (voterIds(status).join() !== fiveVoters.join()) return false;
        if (status.members.some((member: { learner: boolean }) => member.learner)) return false;
        const n5 = status.members.find((member: { id: string }) => member.id === N5);
        if (n5?.peer_address !== '10.0.0.5:7000') return false;
      }
      return true;
    });
    await eventually(() => load.grants.length >= 15);
    // The new voters serve linearizable reads of everything acknowledged so far.
    const sofar = [...load.grants];
    await expectGrants(c, N4, sofar);
    await expectGrants(c, N5, sofar);

    for (const id of joining) {
      const answer = await onLeader(c, all, 'RemoveMember', { node_id: id });
      expect(answer.members.map((member: { id: string }) => member.id)).not.toContain(id);
    }
    const threeVoters = [...IDS].sort();
    await eventually(async () => {
      for (const id of IDS) {
        if (voterIds(await statusOf(c, id)).join() !== threeVoters.join()) return false;
      }
      return true;
    });
    // The removed nodes can go; the three carry on.
    for (const id of joining) {
      await c.nodes.get(id)?.stop();
      c.nodes.delete(id);
    }
    const before = load.grants.length;
    await eventually(() => load.grants.length >= before + 5);
    await load.stop();

    // Every acknowledged grant and release is there, on every remaining node, and the
    // tokens rose from grant to grant.
    for (const id of IDS) await expectGrants(c, id, load.grants);
    const tokens = load.grants.map((grant) => BigInt(grant.token));
    expect(tokens).toEqual([...tokens].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(c.logs.filter((entry) => entry.level === 'error')).toEqual([]);
  });

  it('removes the leader itself: it hands over first, and the new leader removes it', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const handedOver = await rpcError(
      c.at(leader).cluster.call('RemoveMember', { node_id: leader }),
    );
    expect(handedOver.code).toBe(grpc.status.UNAVAILABLE);
    expect(handedOver.details).toMatch(/handed leadership to .* before its removal; retry there/);
    const next = handedOver.trailer('dlm-leader-hint') as NodeId;
    expect(next).not.toBe(leader);
    const answer = await c.at(next).cluster.call('RemoveMember', { node_id: leader });
    expect(answer.members.map((member: { id: string }) => member.id)).not.toContain(leader);
    const rest = IDS.filter((id) => id !== leader);
    expect(await leaderAmong(c, rest)).toBe(next);
    await eventually(async () => {
      for (const id of rest) {
        if (voterIds(await statusOf(c, id)).join() !== [...rest].sort().join()) return false;
      }
      return true;
    });
    expect(c.nodes.get(leader)?.status().role).toBe('follower');
    // Writes go on with the two that remain.
    const session = await c.openSession(next);
    expect(Number(session)).toBeGreaterThan(0);
    // From two voters, a removal is refused: one of them alone could never elect a leader.
    const refused = await rpcError(
      c.at(next).cluster.call('RemoveMember', { node_id: rest.find((id) => id !== next) }),
    );
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.trailer('dlm-error-code')).toBe('FAILED_PRECONDITION');
    expect(refused.details).toMatch(/fewer than 2 voters/);
    // The removed node is stopped by the harness; nothing else needs it.
    await c.nodes.get(leader)?.stop();
    c.nodes.delete(leader);
  });

  it('transfers leadership to a named voter, and to the most caught-up one', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const target = IDS.find((id) => id !== leader) as NodeId;
    const named = await c.at(leader).cluster.call('TransferLeadership', {
      target_node_id: target,
    });
    expect(named.leader_id).toBe(target);
    expect(named.header.node_id).toBe(leader);
    expect(await c.leaderId()).toBe(target);

    const best = await c.at(target).cluster.call('TransferLeadership', {});
    expect(best.leader_id).not.toBe(target);
    expect(IDS).toContain(best.leader_id);
    expect(await c.leaderId()).toBe(best.leader_id);

    // To itself: nothing to do.
    const self = await c.at(best.leader_id).cluster.call('TransferLeadership', {
      target_node_id: best.leader_id,
    });
    expect(self.leader_id).toBe(best.leader_id);
    // Writes still work with the new leader.
    expect(Number(await c.openSession(target))).toBeGreaterThan(0);
  });

  it('refuses what it cannot do with a status and a message that name the member', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const follower = await c.followerId();
    const call = (id: NodeId, method: string, request: object) =>
      rpcError(c.at(id).cluster.call(method, request));

    // Only the leader changes membership; the others point at it.
    for (const [method, request] of [
      ['AddMember', { node_id: 'n4', peer_address: 'h:1', client_address: 'h:2' }],
      ['RemoveMember', { node_id: leader }],
      ['TransferLeadership', {}],
    ] as const) {
      const error = await call(follower, method, request);
      expect(error.code, method).toBe(grpc.status.UNAVAILABLE);
      expect(error.trailer('dlm-leader-hint'), method).toBe(leader);
    }

    const already = await call(leader, 'AddMember', {
      node_id: follower,
      peer_address: 'h:1',
      client_address: 'h:2',
    });
    expect(already.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(already.details).toMatch(
      new RegExp(`^${follower} is already a voter, reached at .*, not h:1; remove it first`),
    );

    const stranger = await call(leader, 'RemoveMember', { node_id: 'n9' });
    expect(stranger.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(stranger.details).toBe('n9 is not a member of the cluster');

    const notVoter = await call(leader, 'TransferLeadership', { target_node_id: 'n9' });
    expect(notVoter.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(notVoter.details).toMatch(/^n9 is not a voter/);

    // Malformed requests name the field, on any node.
    const malformed: [string, object, RegExp][] = [
      [
        'AddMember',
        { peer_address: 'h:1', client_address: 'h:2' },
        /AddMemberRequest.node_id: must not be empty/,
      ],
      [
        'AddMember',
        { node_id: '-bad', peer_address: 'h:1', client_address: 'h:2' },
        /AddMemberRequest.node_id: must match/,
      ],
      [
        'AddMember',
        { node_id: 'n4', peer_address: 'nohost', client_address: 'h:2' },
        /AddMemberRequest.peer_address: expected "host:port"/,
      ],
      [
        'AddMember',
        { node_id: 'n4', peer_address: 'h:1', client_address: 'h:0' },
        /AddMemberRequest.client_address: port 0 out of range/,
      ],
      ['RemoveMember', {}, /RemoveMemberRequest.node_id: must not be empty/],
      [
        'TransferLeadership',
        { target_node_id: 'a b' },
        /TransferLeadershipRequest.target_node_id: must match/,
      ],
    ];
    for (const [method, request, message] of malformed) {
      const error = await call(follower, method, request);
      expect(error.code, JSON.stringify(request)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.details).toMatch(message);
    }
    // Nothing changed.
    expect(voterIds(await statusOf(c, leader))).toEqual([...IDS].sort());
  });

  it('a learner that does not catch up stays a learner; adding it again once it runs promotes it', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    const request = { node_id: N4, peer_address: '10.0.0.4:7000', client_address: '10.0.0.4:7001' };
    // n4 is not running yet: the call runs out while n4 is a learner.
    const timedOut = await rpcError(
      c.at(leader).cluster.call('AddMember', request, { deadlineMs: 1_000 }),
    );
    expect(timedOut.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(timedOut.details).toMatch(/^n4 was added as a learner but did not catch up/);
    const learners = (await statusOf(c, leader)).members.filter(
      (member: { learner: boolean }) => member.learner,
    );
    expect(learners.map((member: { id: string }) => member.id)).toEqual([N4]);

    await startJoining(c, N4, 20);
    const answer = await onLeader(c, IDS, 'AddMember', request);
    expect(voterIds(answer)).toEqual([...IDS, N4].sort());
  });

  it('two AddMember calls for one node at once both succeed, and so does a third for the voter', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const leader = await c.leaderId();
    await startJoining(c, N4, 21);
    const request = { node_id: N4, peer_address: '10.0.0.4:7000', client_address: '10.0.0.4:7001' };
    const [first, second] = await Promise.all([
      c.at(leader).cluster.call('AddMember', request, { deadlineMs: 15_000 }),
      c.at(leader).cluster.call('AddMember', request, { deadlineMs: 15_000 }),
    ]);
    expect(voterIds(first)).toEqual([...IDS, N4].sort());
    expect(voterIds(second)).toEqual([...IDS, N4].sort());
    const again = await c.at(leader).cluster.call('AddMember', request, { deadlineMs: 15_000 });
    expect(voterIds(again)).toEqual([...IDS, N4].sort());
    const moved = await rpcError(
      c.at(leader).cluster.call('AddMember', { ...request, peer_address: '10.0.0.5:7000' }),
    );
    expect(moved.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(moved.details).toMatch(
      /already a voter, reached at 10\.0\.0\.4:7000, not 10\.0\.0\.5:7000/,
    );
  });
});
