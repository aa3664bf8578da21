import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { LockWorkloadStats } from '../../src/tools/simulate/lock-workload.ts';
import { formatSeedReport, LockTotals } from '../../src/tools/simulate/report.ts';
import { runSimulation } from '../../src/tools/simulate/simulator.ts';

/**
 * `npm run simulate` names the lock workload beside the Raft figures: per seed, and
 * totalled over a run of seeds. Seed 42 exercises every figure (sessions, grants,
 * releases, expiries, retries), so each must be non-zero there.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The numbers of a printed `locks:` line, by label. */
function lockFigures(text: string): Map<string, number> {
  const line = text.split('\n').find((each) => each.trimStart().startsWith('locks:')) ?? '';
  const figures = new Map<string, number>();
  for (const [, label, value] of line.matchAll(/([a-z][a-z -]*?) (\d+)/g)) {
    figures.set((label ?? '').replace(/^locks: /, '').trim(), Number(value));
  }
  return figures;
}

describe('the simulator report', () => {
  it('a single seed prints its lock workload next to the Raft figures, every count non-zero', () => {
    const result = runSimulation(42);
    expect(result.violation).toBeNull();
    const { sessionsOpened, grants, releases, sessionsExpired, retriesSent } = result.lockStats;
    for (const [name, count] of Object.entries({
      sessionsOpened,
      grants,
      releases,
      sessionsExpired,
      retriesSent,
    })) {
      expect(count, name).toBeGreaterThan(0);
    }
    const report = formatSeedReport(result);
    expect(report).toMatch(/^seed 42 ok\n {2}raft: {2}elections \d+ {2}commits \d+/);
    const printed = lockFigures(report);
    expect(printed.get('sessions opened')).toBe(sessionsOpened);
    expect(printed.get('grants')).toBe(grants);
    expect(printed.get('releases')).toBe(releases);
    expect(printed.get('expiries')).toBe(sessionsExpired);
    expect(printed.get('retries')).toBe(retriesSent);
  });

  it('npm run simulate --seeds totals the lock figures of its seeds', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'scripts/simulate.ts', '--seeds', '2'],
        { cwd: ROOT, timeout: 60_000 },
        (error, out) => (error === null ? resolve(out) : reject(error)),
      );
    });
    const totals = new LockTotals();
    for (const seed of [1, 2]) totals.add(runSimulation(seed).lockStats);
    const printed = lockFigures(stdout);
    const expected: [string, keyof LockWorkloadStats][] = [
      ['sessions opened', 'sessionsOpened'],
      ['grants', 'grants'],
      ['releases', 'releases'],
      ['expiries', 'sessionsExpired'],
      ['retries', 'retriesSent'],
    ];
    for (const [label, key] of expected) {
      expect(printed.get(label), label).toBe(totals.totals[key]);
      expect(totals.totals[key], label).toBeGreaterThan(0);
    }
  });
});
