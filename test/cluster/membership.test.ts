import { afterEach, describe, expect, it } from 'vitest';
import {
  type Acknowledged,
  expectAcknowledgedState,
  load,
  openSession,
  type Timing,
} from '../support/lock-load.ts';
import { type DlmRun, ProcessCluster } from '../support/process-cluster.ts';

/**
 * Membership changes on real processes, driven by the `dlm` CLI as an operator would:
 * the founders' config lists 3 nodes, the joiners start empty with `dlm serve --join`
 * and a config that lists every node, and `dlm member add|remove` does the rest.
 */
let cluster: ProcessCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

const CLIENTS = 2;

interface Client {
  readonly acknowledged: Acknowledged[];
  readonly acks: Timing[];
  readonly done: Promise<void>;
}

function expectSucceeded(run: DlmRun, what: string): void {
  expect({ what, code: run.code, stderr: run.stderr }).toEqual({ what, code: 0, stderr: '' });
}

/** The member lines `dlm status` prints: `  n1  voter  peer ...  client ...`. */
function membersIn(statusOutput: string): string[] {
  return statusOutput
    .split('\n')
    .filter((line) => /^ {2}\S+ +(voter|learner) /.test(line))
    .map((line) => line.trim().split(/\s+/).slice(0, 2).join(' '));
}

describe('membership changes on real processes', () => {
  it('grows 3 → 5 and shrinks back to 3 with dlm member add|remove, live, while clients run', async () => {
    cluster = await ProcessCluster.create(5, {}, 3);
    const c = cluster;
    c.startAll();
    await c.waitForLeader(15_000);
    const stop = { value: false };
    const clients: Client[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const session = await openSession(c, `membership-${i}`);
      const acknowledged: Acknowledged[] = [];
      const acks: Timing[] = [];
      clients.push({
        acknowledged,
        acks,
        done: load(c, session, acknowledged, stop, acks, `client-${i}`),
      });
    }
    const grants = (): number => clients.reduce((sum, each) => sum + each.acknowledged.length, 0);
    const progressSince = async (before: number, what: string): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (grants() < before + 5 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(grants(), `clients make progress ${what}`).toBeGreaterThanOrEqual(before + 5);
    };
    const startedAtMs = Date.now();
    await progressSince(0, 'before any change');

    for (const id of ['n4', 'n5']) {
      c.start(id, { join: true });
      const before = grants();
      const added = await c.dlm(['member', 'add', id, '--config', c.allNodesConfigPath]);
      expectSucceeded(added, `member add ${id}`);
      expect(added.stdout).toContain(`${id} is a voter now`);
      await progressSince(before, `after adding ${id}`);
    }
    const grown = await c.dlm(['status', '--config', c.allNodesConfigPath]);
    expectSucceeded(grown, 'status of 5');
    expect(membersIn(grown.stdout)).toEqual(
      ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => `${id} voter`),
    );

    // Shrink: the leader first (it hands over, and the CLI retries at the new leader),
    // then a founder that does not lead. Each removed node is then stopped.
    const leader = await c.waitForLeader(10_000);
    const follower = c.founders.find((node) => node.id !== leader)?.id ?? '';
    for (const id of [leader, follower]) {
      const before = grants();
      const removed = await c.dlm(['member', 'remove', id, '--config', c.allNodesConfigPath]);
      expectSucceeded(removed, `member remove ${id}`);
      expect(removed.stdout).toContain(`${id} is no longer a member`);
      expect(await c.terminate(id), `${id} exits cleanly on SIGTERM`).toBe(0);
      await progressSince(before, `after removing ${id}`);
    }
    const remaining = c.nodes
      .map((node) => node.id)
      .filter((id) => id !== leader && id !== follower);
    const shrunk = await c.dlm(['status', '--config', c.allNodesConfigPath]);
    expect(shrunk.code, shrunk.stderr).toBe(0);
    expect(membersIn(shrunk.stdout)).toEqual(remaining.map((id) => `${id} voter`));
    expect(await c.waitForLeader(10_000)).toSatisfy((id: string) => remaining.includes(id));

    stop.value = true;
    await Promise.all(clients.map((each) => each.done));
    for (const each of clients) await expectAcknowledgedState(c, each.acknowledged);
    const acks = clients.flatMap((each) => each.acks).sort((a, b) => a.ackedAtMs - b.ackedAtMs);
    const longestGapMs = Math.max(
      ...acks.slice(1).map((ack, i) => ack.ackedAtMs - (acks[i]?.ackedAtMs ?? ack.ackedAtMs)),
    );
    console.log(
      `membership: 3 -> 5 -> 3 (removed ${leader}, the leader, and ${follower}) in ${Date.now() - startedAtMs} ms; ${grants()} grants from ${CLIENTS} clients, all checked; longest pause between acknowledged grants ${longestGapMs} ms`,
    );
  }, 120_000);
});
