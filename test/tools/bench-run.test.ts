import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { CellResult } from '../../src/tools/bench/analyze.ts';
import { findEtcd } from '../../src/tools/bench/etcd-cluster.ts';

/**
 * `npm run bench` in a tiny mode against a real 3-node cluster (and etcd, where it is
 * installed): it must finish, write the JSON with every figure, and find no violation.
 * Not a timed test: the numbers are not judged.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUN_TIMEOUT_MS = 90_000;
const dir = mkdtempSync(join(tmpdir(), 'dlm-bench-test-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Where etcd is installed the same run also compares (the bench installs nothing). */
const etcdInstalled = (() => {
  try {
    findEtcd(null);
    return true;
  } catch {
    return false;
  }
})();

interface CellJson {
  readonly system: string;
  readonly cell: string;
}

/** The JSON holds CellResults (NaN written as null). */
function expectComplete(cell: CellResult): void {
  const label = `${cell.system} ${cell.cell}`;
  expect(cell.pairs, label).toBeGreaterThan(0);
  expect(cell.pairsPerSecond, label).toBeGreaterThan(0);
  expect(cell.acquireMs.p50, label).toBeGreaterThan(0);
  expect(cell.acquireMs.p99, label).toBeGreaterThanOrEqual(cell.acquireMs.p50);
  expect(cell.releaseMs.p50, label).toBeGreaterThan(0);
  expect(cell.violations.count, label).toBe(0);
  expect(cell.fairness.grantsMin, label).toBeGreaterThan(0);
  expect(cell.serverCpu?.members, label).toHaveLength(3);
  expect(
    cell.serverCpu?.members.filter((member) => member.leader),
    label,
  ).toHaveLength(1);
  expect(cell.serverCpu?.totalMsPerWrite, label).toBeGreaterThan(0);
  // Counted, not NaN (written as null): every member's main thread was read before and after.
  for (const member of cell.serverCpu?.members ?? []) {
    expect(member.preemptionsPerWrite, `${label} ${member.name}`).toBeGreaterThanOrEqual(0);
  }
  expect(cell.loadgenCpuMsPerWrite, label).toBeGreaterThan(0);
  expect(cell.loadgenBusiest, label).toBeGreaterThan(0);
  expect(cell.loadgenBusiest, label).toBeLessThanOrEqual(1);
}

/** The --stall-ms report: every dlm node, every slow acquire put down to one cause. */
function expectPauseReport(cell: CellResult): void {
  if (cell.system !== 'dlm') {
    expect(cell.pauses ?? null, cell.system).toBeNull();
    return;
  }
  const report = cell.pauses;
  expect(report?.thresholdMs).toBe(1);
  expect(report?.nodes.map((node) => node.name).sort()).toEqual(['n1', 'n2', 'n3']);
  expect(report?.nodes.filter((node) => node.leader)).toHaveLength(1);
  expect(report?.slowAcquires).toBeGreaterThanOrEqual(1);
  const causes = Object.values(report?.slowDuring ?? {}).reduce((sum, count) => sum + count, 0);
  expect(causes).toBe(report?.slowAcquires);
}

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
    const compare = etcdInstalled ? ['--compare', 'etcd'] : [];
    // One queued cell covers every figure, the hand-off included.
    const cells = ['--cells', '3x-hot'];
    // --stall-ms: the dlm cells report the pauses their nodes logged; etcd's none.
    const tiny = ['--seconds', '1', '--warmup', '50', ...cells, ...compare, '--stall-ms', '1'];
    tiny.push('--out', out);
    const run = await runBench(tiny);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`results: ${out}`);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.violations).toBe(0);
    const systems = etcdInstalled ? ['dlm', 'etcd'] : ['dlm'];
    const names = (cellName: string) => systems.map((system) => `${system} ${cellName}`);
    expect(report.cells.map((cell: CellJson) => `${cell.system} ${cell.cell}`)).toEqual(
      names('3x-hot'),
    );
    for (const cell of report.cells) expectComplete(cell);
    // Three clients on one lock must queue, and each grant then is a hand-off.
    for (const cell of report.cells) expect(cell.handoffMs.count, cell.system).toBeGreaterThan(0);
    for (const warmup of report.warmup) expect(warmup.pairs).toBeGreaterThanOrEqual(50);
    for (const cell of report.cells) expectPauseReport(cell);
    expect(run.stderr).toMatch(/pauses >= 1 ms: n1.* GC \d+ .*stalls \d+/);
    expect(run.stderr).toMatch(/event loop preempted per write: n1( \(leader\))? \d+\.\d\d, n2/);
    if (etcdInstalled) {
      expect(report.ratios.map((ratio: { cell: string }) => ratio.cell)).toEqual(['3x-hot']);
      expect(report.etcdVersion).toMatch(/^etcd Version: 3\./);
    }
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
