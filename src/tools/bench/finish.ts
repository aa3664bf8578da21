import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { CellResult } from './analyze.ts';
import { etcdVersion } from './etcd-cluster.ts';
import type { BenchOptions } from './options.ts';
import { formatRatios, formatResults, type Ratio, ratiosOf } from './report.ts';
import type { ServerCluster } from './server-cluster.ts';

/** The end of a run: the tables, the JSON file, the violations and the exit code. */
export interface BenchIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

export interface Outcome {
  readonly clusters: readonly ServerCluster[];
  readonly warmups: readonly CellResult[];
  readonly results: readonly CellResult[];
  readonly etcdBin: string | null;
}

export function finishRun(options: BenchOptions, outcome: Outcome, io: BenchIo): number {
  const ratios = ratiosOf(outcome.results);
  io.out(`\n${formatResults(outcome.results)}`);
  if (ratios.length > 0)
    io.out(
      `\ndlm / etcd${options.rounds > 1 ? `, medians of ${options.rounds} rounds` : ''} ` +
        `(pairs/s: higher is better for dlm; the rest: lower)\n${formatRatios(ratios)}`,
    );
  const all = [...outcome.warmups, ...outcome.results];
  const violations = all.reduce((sum, result) => sum + result.violations.count, 0);
  const path = writeJson(options, outcome, ratios, violations);
  io.out(`\nresults: ${path}\n`);
  for (const result of all) {
    for (const line of result.violations.first)
      io.err(`VIOLATION ${result.system} ${result.cell}: ${line}\n`);
    for (const note of result.notes) io.err(`note ${result.system} ${result.cell}: ${note}\n`);
  }
  if (violations > 0) {
    io.err(`bench: FAILED: ${violations} safety violations (see above and the JSON)\n`);
    return 1;
  }
  return 0;
}

function writeJson(
  options: BenchOptions,
  outcome: Outcome,
  ratios: readonly Ratio[],
  violations: number,
): string {
  const path = resolve(
    options.out ?? join('results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  );
  mkdirSync(dirname(path), { recursive: true });
  const report = {
    finishedAt: new Date().toISOString(),
    options,
    host: {
      cpus: cpus().length,
      loadavg: loadavg(),
      node: process.version,
      platform: process.platform,
    },
    etcdVersion: outcome.etcdBin === null ? null : etcdVersion(outcome.etcdBin),
    servers: outcome.clusters.map((cluster) => ({
      system: cluster.system,
      members: cluster.members,
    })),
    violations,
    warmup: outcome.warmups,
    cells: outcome.results,
    ratios,
  };
  // NaN and Infinity (an empty cell's percentiles) become null in JSON.
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  return path;
}
