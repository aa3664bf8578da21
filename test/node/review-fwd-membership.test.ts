import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { ConfigChange } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { ids, OPTIONS, sleep, TestCluster, until } from './cluster-harness.ts';

/**
 * Review of 910a338 (forwards only from members of the leader's applied config): probes
 * of membership changes in flight. Each checks that a member's write through a node the
 * leader may not count yet is applied exactly once, and how long it is refused.
 */
const N4 = nodeId('n4');

let cluster: TestCluster | null = null;
let extra: DlmNode[] = [];
afterEach(async () => {
  await Promise.all(extra.map((node) => node.stop()));
  extra = [];
  await cluster?.stopAll();
  cluster = null;
});

function openSession(clientName: string, requestId: string): LockCommand {
  return { type: 'OpenSession', ttlMs: 60_000, clientName, requestId };
}

function sessionsNamed(node: DlmNode, clientName: string): number[] {
  return node.locks.sessionIds().filter((id) => node.locks.session(id)?.clientName === clientName);
}

// biome-ignore lint/suspicious/noExplicitAny: reaching into the node for a config change alone
type Internals = any;

async function changeConfig(node: DlmNode, change: ConfigChange): Promise<void> {
  await (node as Internals).memberChanges.changeConfig(change, Date.now() + 5_000);
}

/** Retries like a client (same request id) and records each failure's code and message. */
async function writeRetrying(
  node: DlmNode,
  command: LockCommand,
  failures: string[],
  deadlineMs = 5_000,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    try {
      const { result } = await node.write(command);
      if (result.type !== 'SessionOpened') throw new Error(`unexpected ${result.type}`);
      return result.sessionId;
    } catch (error) {
      if (!(error instanceof DlmError) || error.code === 'INTERNAL') throw error;
      failures.push(`${error.code}: ${error.message}`);
      if (performance.now() - started > deadlineMs) throw error;
      await sleep(20);
    }
  }
}

describe('review 910a338: forwards during membership changes', () => {
  it('a learner added just before a transfer to a follower that has not applied its addition', async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const target = c.node(ids.find((id) => id !== leader.id) as NodeId);
    const refused: string[] = [];
    const configWhenLeading: boolean[] = [];
    target.observe({
      forwardFromNonMember: (from) => refused.push(from),
      leaderChanged: () => {
        if (target.status().role === 'leader') {
          configWhenLeading.push(target.status().learners.includes(N4));
        }
      },
    });

    const n4 = new DlmNode(N4, MemoryWritableStorage.joining(), c.network.connect(N4), OPTIONS);
    n4.start();
    extra.push(n4);
    // The target hears of no commit at or past the addLearner entry: it will lead with
    // an applied config that lacks n4.
    const added = (leader as Internals).raft.log.lastIndex() + 1;
    c.network.hold(
      (message: PeerMessage) =>
        message.kind === 'raft' &&
        message.message.to === target.id &&
        message.message.from === leader.id &&
        (message.message.type === 'AppendEntries' || message.message.type === 'Heartbeat') &&
        message.message.leaderCommit >= added,
    );
    await changeConfig(leader, { type: 'addLearner', nodeId: N4 });
    await until(() => n4.status().leaderId === leader.id, 'n4 hears from the leader');
    expect(target.status().commitIndex).toBeLessThan(added);

    await leader.transferLeadership(target.id, { timeoutMs: 5_000 });
    c.network.hold(() => false);

    const failures: string[] = [];
    const started = performance.now();
    const sessionId = await writeRetrying(n4, openSession('via-n4', 'req-n4'), failures);
    const tookMs = performance.now() - started;
    await until(
      () => [...c.nodes.values()].every((node) => sessionsNamed(node, 'via-n4').length === 1),
      'every replica applied it',
    );
    await sleep(200);
    for (const node of [...c.nodes.values(), n4]) {
      expect(sessionsNamed(node, 'via-n4')).toEqual([sessionId]);
    }
    // It led with an applied config that lacked n4, yet n4 never reached it meanwhile.
    expect(configWhenLeading).toEqual([false]);
    expect(refused).toEqual([]);
    expect(failures).toEqual([]);
    expect(tookMs).toBeLessThan(1_000);
  });

  it("a removed node's write is dropped, fails UNAVAILABLE, and its retry after the re-add applies once", async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const removedId = ids.find((id) => id !== leader.id) as NodeId;
    const removed = c.node(removedId);
    const refused: string[] = [];
    leader.observe({ forwardFromNonMember: (from) => refused.push(from) });
    await leader.removeMember(removedId, { timeoutMs: 5_000 });
    await until(() => !removed.status().voters.includes(removedId), 'it applied its removal');

    const command = openSession('via-removed', 'req-removed');
    const first = await removed.write(command).then(
      () => 'applied',
      (error: DlmError) => `${error.code}: ${error.message}`,
    );
    expect(first).toMatch(/^UNAVAILABLE: the leader did not answer a forwarded write/);
    expect(refused).toEqual([removedId]);

    await changeConfig(leader, { type: 'addLearner', nodeId: removedId });
    const failures: string[] = [];
    const sessionId = await writeRetrying(removed, command, failures);
    // The same request again through another node: the same session, not a second one.
    const again = await c.node(leader.id).write(command);
    expect(again.result).toMatchObject({ type: 'SessionOpened', sessionId });
    await until(
      () => [...c.nodes.values()].every((node) => sessionsNamed(node, 'via-removed').length === 1),
      'every replica applied it once',
    );
  });
});
