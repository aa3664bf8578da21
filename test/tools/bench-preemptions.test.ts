import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { CellResult, MemberCpu } from '../../src/tools/bench/analyze.ts';
import { mainThreadPreemptions } from '../../src/tools/bench/proc-cpu.ts';
import { formatPreemptions } from '../../src/tools/bench/report.ts';

describe('mainThreadPreemptions', () => {
  it('counts the involuntary switches of a process that competes for the CPUs', async () => {
    // Busy loops, one more than there are cores, so that the kernel has to take the CPU
    // from each of them while it could still run. Each says when its loop starts: its
    // start-up's own switches (reads, waits for threads) must not count.
    const loop =
      "process.stdout.write('go'); const end = Date.now() + 2500; while (Date.now() < end);";
    const busy = Array.from({ length: 3 }, () => spawn(process.execPath, ['-e', loop]));
    try {
      await Promise.all(
        busy.map((child) => new Promise((resolve) => child.stdout.once('data', resolve))),
      );
      const pid = busy[0]?.pid as number;
      const before = mainThreadPreemptions(pid);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      // A scheduler slice is a few ms: a second of sharing makes dozens at the least.
      expect(mainThreadPreemptions(pid) - before).toBeGreaterThanOrEqual(20);
    } finally {
      for (const child of busy) child.kill();
    }
  });

  it('names a process it cannot read', () => {
    expect(() => mainThreadPreemptions(2 ** 22 + 1)).toThrow(/cannot read \/proc\/4194305\/status/);
  });
});

describe('formatPreemptions', () => {
  const member = (name: string, leader: boolean, perWrite: number): MemberCpu => ({
    name,
    leader,
    cpuMs: 1,
    msPerWrite: 1,
    preemptionsPerWrite: perWrite,
  });
  const result = (system: 'dlm' | 'etcd'): CellResult =>
    ({
      system,
      serverCpu: {
        members: [member('n1', false, 0.5), member('n2', true, 2.25)],
        totalMsPerWrite: 2,
      },
    }) as unknown as CellResult;

  it('prints each dlm node, the leader marked', () => {
    expect(formatPreemptions(result('dlm'))).toBe(
      '  event loop preempted per write: n1 0.50, n2 (leader) 2.25\n',
    );
  });

  it('prints nothing for etcd, whose main thread is not where its work runs', () => {
    expect(formatPreemptions(result('etcd'))).toBe('');
  });
});
