import { afterEach, describe, expect, it } from 'vitest';
import type { LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { freePort } from '../support/free-port.ts';
import {
  PEER_TRANSPORTS,
  type PeerTransportName,
  startPeerTransport,
} from '../support/peer-transports.ts';
import { sleep, until } from './cluster-harness.ts';

/**
 * Membership over real peer links (gRPC, then TCP), where addresses matter: a node the founders
 * were never configured with joins, leads, survives a founder's restart (the founder
 * knows only the founders and learns the rest from its peers), and removes itself.
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

const founders = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
const N4 = nodeId('n4');
const running = new Map<NodeId, DlmNode>();

afterEach(async () => {
  await Promise.all([...running.values()].map((node) => node.stop()));
  running.clear();
});

interface Member {
  readonly id: NodeId;
  readonly peerAddress: string;
  readonly clientAddress: string;
}

/** Starts one node whose transport and address book know only `known`. */
async function startNode(
  kind: PeerTransportName,
  self: Member,
  known: readonly Member[],
  storage: MemoryWritableStorage,
  seed: number,
): Promise<DlmNode> {
  const transport = await startPeerTransport(kind, {
    id: self.id,
    listenAddress: self.peerAddress,
    peers: new Map(known.map((member) => [member.id, member.peerAddress])),
    queueMessagesMax: 10_000,
    batchMessagesMax: 256,
    reconnectDelayMsMin: 20,
    reconnectDelayMsMax: 200,
  });
  const node = new DlmNode(self.id, storage, transport, OPTIONS, undefined, seed);
  node.start();
  node.learnAddresses(known);
  running.set(self.id, node);
  return node;
}

function leaderAmong(ids: readonly NodeId[]): DlmNode | undefined {
  return ids.map((id) => running.get(id)).find((node) => node?.status().role === 'leader');
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

describe.each(PEER_TRANSPORTS)('membership over real peer links (%s)', (kind) => {
  it('a node the founders never heard of joins, leads, outlives a founder restart, removes itself, and is added back', async () => {
    const ports = await Promise.all([...founders, N4].map(() => freePort()));
    const members: Member[] = [...founders, N4].map((id, i) => ({
      id,
      peerAddress: `127.0.0.1:${ports[i]}`,
      clientAddress: '',
    }));
    const founding = members.slice(0, 3);
    const n4Member = members[3] as Member;
    const storages = new Map(
      founders.map((id) => [
        id,
        MemoryWritableStorage.bootstrap({ voters: founders, learners: [] }),
      ]),
    );
    for (const [i, member] of founding.entries()) {
      await startNode(
        kind,
        member,
        founding,
        storages.get(member.id) as MemoryWritableStorage,
        i + 1,
      );
    }
    await until(() => leaderAmong(founders) !== undefined, 'a founder leads');
    // n4 knows only itself; the founders know nothing of it.
    const n4 = await startNode(kind, n4Member, [n4Member], MemoryWritableStorage.joining(), 4);

    const leader = leaderAmong(founders) as DlmNode;
    const view = await leader.addMember(n4Member, { timeoutMs: 15_000 });
    expect(view.voters).toContain(N4);
    expect(view.learners).toEqual([]);
    const all = [...founders, N4];
    await until(
      () => all.every((id) => running.get(id)?.status().voters.includes(N4)),
      'every node sees n4 as a voter',
    );
    // Every node learned every address, n4 included (from the leader's announcement).
    for (const id of all) {
      const known = running.get(id)?.memberAddresses() ?? new Map();
      for (const member of members)
        expect(known.get(member.id)?.peerAddress).toBe(member.peerAddress);
    }

    // n4 forwards a write to the leader, and hands leadership to itself.
    expect((await openSession(n4, 'via-n4')).type).toBe('SessionOpened');
    expect(await leader.transferLeadership(N4, { timeoutMs: 5_000 })).toBe(N4);
    await until(() => n4.status().role === 'leader', 'n4 leads');

    // A founder restarts knowing only the founders. It must answer n4, the leader, and
    // learns n4's address from its peers.
    const restarted = founding.find((member) => member.id !== leader.id) as Member;
    await running.get(restarted.id)?.stop();
    running.delete(restarted.id);
    const again = await startNode(
      kind,
      restarted,
      founding,
      storages.get(restarted.id) as MemoryWritableStorage,
      9,
    );
    for (let i = 0; i < 5; i++) await openSession(n4, `after-restart-${i}`);
    await until(
      () => again.memberAddresses().get(N4)?.peerAddress === n4Member.peerAddress,
      'the restarted founder learns where n4 is',
    );
    await until(
      () => again.status().appliedIndex >= n4.status().commitIndex,
      'the restarted founder catches up from n4',
    );
    expect(again.locks.sessionIds()).toEqual(n4.locks.sessionIds());

    // n4, the leader, is asked to remove itself: it hands leadership to a founder first
    // and points there, the founder removes it, and writes go on.
    const handedOver = await n4.removeMember(N4, { timeoutMs: 5_000 }).then(
      () => null,
      (error: unknown) => error as DlmError,
    );
    expect(handedOver?.code).toBe('UNAVAILABLE');
    const next = leaderAmong(founders) as DlmNode;
    expect(handedOver?.leaderHint).toBe(next.id);
    const shrunk = await next.removeMember(N4, { timeoutMs: 5_000 });
    expect(shrunk.voters).toEqual(founders);
    expect((await openSession(next, 'after-removal')).type).toBe('SessionOpened');
    expect(n4.status().role).not.toBe('leader');

    // Added back (the links to it were dropped when it left), it catches up and votes.
    const regrown = await next.addMember(n4Member, { timeoutMs: 15_000 });
    expect(regrown.voters).toEqual(all);
    expect((await openSession(n4, 'back-again')).type).toBe('SessionOpened');
    await until(() => n4.status().voters.includes(N4), 'n4 sees itself a voter again');
  });
});
