/**
 * waitUntilExited judges one process: a node that exited and was restarted by another
 * nemesis before the wait looked (a new pid) has exited (seed 1207: the membership
 * nemesis took a leader's disk-full exit for a refusal, as the disk-full nemesis had
 * already started it again).
 */
import { describe, expect, it } from 'vitest';
import { waitUntilExited } from '../../src/tools/jepsen/waits.ts';
import type { ProcessCluster } from '../../src/tools/process-cluster.ts';

function clusterWith(process: { pid: number | undefined; running: boolean }): ProcessCluster {
  return {
    pid: () => process.pid,
    isRunning: () => process.running,
  } as unknown as ProcessCluster;
}

describe('waitUntilExited', () => {
  it('a process restarted under a new pid counts as exited', async () => {
    const node = { pid: 200, running: true };
    expect(await waitUntilExited(clusterWith(node), 'n1', 100, 100)).toBe(true);
  });

  it('the same process still running is not, once the time is up', async () => {
    const node = { pid: 100, running: true };
    expect(await waitUntilExited(clusterWith(node), 'n1', 100, 100)).toBe(false);
  });

  it('without a pid, the process running when the wait began is the one watched', async () => {
    const node = { pid: 100 as number | undefined, running: true };
    const waiting = waitUntilExited(clusterWith(node), 'n1', 2_000);
    setTimeout(() => {
      node.running = false;
      node.pid = undefined;
    }, 100);
    expect(await waiting).toBe(true);
  });
});
