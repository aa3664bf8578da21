import { afterEach, describe, expect, it } from 'vitest';
import { Members } from '../../src/tools/jepsen/members.ts';
import { statusOf, waitUntilServing } from '../../src/tools/jepsen/waits.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Who may start, stop or fault a node in a Jepsen run. A 600 s run (seed 1203) lost
 * n2's process: the kill nemesis had drawn n2, waited, and then killed and restarted it
 * although a removal had taken n2 out of the cluster meanwhile; the membership nemesis
 * had just started n2 again, empty, to add it back. The second start replaced the
 * harness's handle with a process that failed on the database's lock, and the first
 * served on for 280 s unseen: later faults on n2 hit nothing, and the disk-full checker
 * read n2's log before that process had failed its write.
 */
describe('node ownership in a Jepsen run', () => {
  it('a fault cannot take a node that is no longer a member (its pick went stale)', async () => {
    const members = new Members(['n1', 'n2', 'n3']);
    members.removed('n2');
    let ran = false;
    const result = await members.holding('n2', async () => {
      ran = true;
      return 'faulted';
    });
    expect(result).toBeNull();
    expect(ran).toBe(false);
    expect(members.hold('n2')).toBe(false);
    // A member is taken once, and free again after.
    expect(await members.holding('n1', async () => members.hold('n1'))).toBe(false);
    expect(members.hold('n1')).toBe(true);
  });

  let cluster: ProcessCluster | null = null;
  /** Processes this test started that the harness may have lost track of. */
  const started: number[] = [];

  afterEach(async () => {
    await cluster?.stopAll();
    for (const pid of started.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone, as it should be.
      }
    }
    cluster?.remove();
    cluster = null;
  });

  it('a second start of a running node is refused, so a kill still stops what serves there', {
    timeout: 60_000,
  }, async () => {
    const c = await ProcessCluster.create(1);
    cluster = c;
    c.start('n1');
    expect(await waitUntilServing(c, 'n1', 20_000)).toBe(true);
    const pid = c.pid('n1');
    if (pid !== undefined) started.push(pid);
    let refusal = '';
    try {
      c.start('n1');
    } catch (error) {
      refusal = (error as Error).message;
    }
    // Without the refusal the second process fails on the database's lock and the kill
    // below stops it, not the first one, which goes on answering.
    await c.kill('n1');
    expect(await statusOf(c, 'n1')).toBeNull();
    expect(refusal).toBe(`cannot start n1: its process ${pid} is still running (kill it first)`);
  });
});
