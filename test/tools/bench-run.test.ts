import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * `npm run bench` in a tiny mode against a real 3-node cluster: it must finish, write
 * the JSON with every figure, and find no violation. Not a timed test: the numbers
 * are not judged.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUN_TIMEOUT_MS = 90_000;
const dir = mkdtempSync(join(tmpdir(), 'dlm-bench-test-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runBench(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'scripts/bench.ts'), ...args],
      { cwd: ROOT, timeout: RUN_TIMEOUT_MS },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('npm run bench', () => {
  it('runs a tiny bench on a fresh cluster and writes complete results', async () => {
    const out = join(dir, 'results.json');
    const run = await runBench([
      '--seconds',
      '1',
      '--warmup',
      '50',
      '--cells',
      '1x-hot,3x-hot',
      '--out',
      out,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`results: ${out}`);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.violations).toBe(0);
    expect(report.cells.map((cell: { cell: string }) => cell.cell)).toEqual(['1x-hot', '3x-hot']);
    for (const cell of report.cells) {
      expect(cell.system).toBe('dlm');
      expect(cell.pairs).toBeGreaterThan(0);
      expect(cell.pairsPerSecond).toBeGreaterThan(0);
      expect(cell.acquireMs.p50).toBeGreaterThan(0);
      expect(cell.acquireMs.p99).toBeGreaterThanOrEqual(cell.acquireMs.p50);
      expect(cell.violations.count).toBe(0);
      expect(cell.fairness.grantsMin).toBeGreaterThan(0);
      expect(cell.serverCpu.members).toHaveLength(3);
      expect(cell.serverCpu.members.filter((m: { leader: boolean }) => m.leader)).toHaveLength(1);
      expect(cell.serverCpu.totalMsPerWrite).toBeGreaterThan(0);
      expect(cell.loadgenCpuMsPerWrite).toBeGreaterThan(0);
    }
    // Three clients on one lock must queue, and each grant then is a hand-off.
    expect(report.cells[1].handoffMs.count).toBeGreaterThan(0);
    expect(report.warmup[0].pairs).toBeGreaterThanOrEqual(50);
  });

  it('refuses a bad option, naming it, before starting anything', async () => {
    const run = await runBench(['--cells', '4-hot']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('cell "4-hot"');
  });

  it('says how to install etcd when it is missing', async () => {
    const run = await runBench(['--compare', 'etcd', '--etcd-bin', join(dir, 'no-such-etcd')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('apt-get install -y etcd-server');
  });
});
