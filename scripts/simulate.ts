import { formatSeedReport, LockTotals } from '../src/tools/simulate/report.ts';
import { type RuntimeResult, runRuntimeSimulation } from '../src/tools/simulate/runtime/runner.ts';
import { runSimulation, type SimResult } from '../src/tools/simulate/simulator.ts';

/**
 * Runs the deterministic simulator.
 *   npm run simulate -- --seed 42          replay one seed, with its options and trace on failure
 *   npm run simulate -- --seeds 1000       run seeds 1..1000 (or --from N to start elsewhere)
 * With --runtime, the runtime simulation instead: real DlmNodes and API handlers.
 *   npm run simulate -- --runtime --seed 42 [--verbose]   replay one seed (--verbose: the whole story)
 *   npm run simulate -- --runtime --seeds 5000            many seeds, with progress and a summary
 */
interface Args {
  seed: number | null;
  seeds: number;
  from: number;
  verbose: boolean;
  runtime: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { seed: null, seeds: 100, from: 1, verbose: false, runtime: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const numeric = (): number => {
      const parsed = Number(value);
      if (value === undefined || !Number.isSafeInteger(parsed) || parsed < 0) {
        fail(`${flag} needs a non-negative integer, got ${value ?? 'nothing'}`);
      }
      i++;
      return parsed;
    };
    if (flag === '--seed') args.seed = numeric();
    else if (flag === '--seeds') args.seeds = numeric();
    else if (flag === '--from') args.from = numeric();
    else if (flag === '--verbose') args.verbose = true;
    else if (flag === '--runtime') args.runtime = true;
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write(
        'usage: npm run simulate -- [--runtime] [--seed S | --seeds N [--from F]] [--verbose]\n',
      );
      process.exit(0);
    } else fail(`unknown argument ${flag}`);
  }
  return args;
}

function fail(message: string): never {
  process.stderr.write(`simulate: ${message}\n`);
  process.exit(2);
}

function report(result: SimResult, trace: boolean): void {
  process.stdout.write(`\nseed ${result.seed} FAILED: ${result.violation}\n`);
  process.stdout.write(`  replay: npm run simulate -- --seed ${result.seed}\n`);
  process.stdout.write(`  options: ${JSON.stringify(result.options)}\n`);
  process.stdout.write(`  after ${result.events} events, ${result.virtualTimeMs} virtual ms\n`);
  if (trace) process.stdout.write(`  last events:\n    ${result.trace.join('\n    ')}\n`);
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  if (args.runtime) {
    mainRuntime(args).catch((error: unknown) => {
      process.stderr.write(`simulate: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(2);
    });
    return;
  }
  const seeds =
    args.seed === null ? Array.from({ length: args.seeds }, (_, i) => args.from + i) : [args.seed];
  const started = performance.now();
  let events = 0;
  let virtualMs = 0;
  let checks = 0;
  const lockTotals = new LockTotals();
  const failed: number[] = [];
  let lastProgress = started;
  for (const [position, seed] of seeds.entries()) {
    const result = runSimulation(seed);
    events += result.events;
    virtualMs += result.virtualTimeMs;
    checks += result.checks;
    lockTotals.add(result.lockStats);
    if (result.violation !== null) {
      failed.push(seed);
      report(result, args.seed !== null || args.verbose);
    } else if (args.seed !== null) {
      process.stdout.write(formatSeedReport(result));
    }
    if (performance.now() - lastProgress > 5000) {
      lastProgress = performance.now();
      const done = position + 1;
      process.stdout.write(
        `  ${done}/${seeds.length} seeds, ${failed.length} violations, ${((lastProgress - started) / 1000).toFixed(0)} s\n`,
      );
    }
  }
  const wallSeconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `\nseeds ${seeds.length}  events ${events}  virtual time ${(virtualMs / 1000).toFixed(0)} s  ` +
      `checks ${checks}  violations ${failed.length}  wall time ${wallSeconds.toFixed(1)} s\n` +
      lockTotals.format(),
  );
  if (failed.length > 0) {
    process.stdout.write(`failing seeds: ${failed.slice(0, 50).join(' ')}\n`);
    process.exit(1);
  }
}

// ------------------------------------------------------------------ --runtime

function reportRuntime(result: RuntimeResult, trace: boolean): void {
  process.stdout.write(`\nseed ${result.seed} FAILED: ${result.violation}\n`);
  process.stdout.write(`  replay: npm run simulate -- --runtime --seed ${result.seed} --verbose\n`);
  process.stdout.write(`  options: ${JSON.stringify(result.options)}\n`);
  process.stdout.write(`  after ${result.events} events, ${result.virtualTimeMs} virtual ms\n`);
  if (result.notes.length > 0)
    process.stdout.write(`  notes:\n    ${result.notes.join('\n    ')}\n`);
  if (trace) process.stdout.write(`  last events:\n    ${result.trace.join('\n    ')}\n`);
}

/** The kind of a violation: the words before its first colon ("Answer", "Mutual exclusion"...). */
function violationKind(violation: string): string {
  return violation.replace(/^(Violation|Assertion): /, '').split(':')[0] ?? violation;
}

async function mainRuntime(args: Args): Promise<void> {
  const seeds =
    args.seed === null ? Array.from({ length: args.seeds }, (_, i) => args.from + i) : [args.seed];
  const started = performance.now();
  let events = 0;
  let virtualMs = 0;
  let answers = 0;
  let committed = 0;
  let setsAcquired = 0;
  let deadlocks = 0;
  let permitsAcquired = 0;
  let elected = 0;
  let proclaimed = 0;
  let leaderReads = 0;
  const failed: number[] = [];
  const byKind = new Map<string, number[]>();
  let lastProgress = started;
  const story =
    args.seed !== null && args.verbose ? (line: string) => process.stdout.write(`${line}\n`) : null;
  for (const [position, seed] of seeds.entries()) {
    const result = await runRuntimeSimulation(seed, {}, {}, story);
    events += result.events;
    virtualMs += result.virtualTimeMs;
    answers += result.answersChecked;
    committed += result.committedEntries;
    setsAcquired += result.stats.clientOps.setsAcquired;
    deadlocks += result.stats.clientOps.errors['AcquireAll:ABORTED/deadlock'] ?? 0;
    permitsAcquired += result.stats.clientOps.permitsAcquired;
    elected += result.stats.clientOps.elected;
    proclaimed += result.stats.clientOps.proclaimed;
    leaderReads += result.stats.clientOps.leaderReads;
    if (result.violation !== null) {
      failed.push(seed);
      const kind = violationKind(result.violation);
      byKind.set(kind, [...(byKind.get(kind) ?? []), seed]);
      reportRuntime(result, args.seed !== null || args.verbose);
    } else if (args.seed !== null) {
      process.stdout.write(
        `seed ${seed} ok: ${result.events} events, ${result.answersChecked} answers checked, trace hash ${result.traceHash}\n  ${JSON.stringify(result.stats)}\n`,
      );
    }
    if (performance.now() - lastProgress > 5000) {
      lastProgress = performance.now();
      process.stdout.write(
        `  ${position + 1}/${seeds.length} seeds, ${failed.length} violations, ${((lastProgress - started) / 1000).toFixed(0)} s\n`,
      );
    }
  }
  const wallSeconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `\nruntime seeds ${seeds.length}  events ${events}  virtual time ${(virtualMs / 1000).toFixed(0)} s  ` +
      `client answers checked ${answers}  committed entries replayed ${committed}  ` +
      `sets granted ${setsAcquired}  set deadlock refusals ${deadlocks}  ` +
      `permits granted ${permitsAcquired}  elected ${elected}  proclaimed ${proclaimed}  leader reads ${leaderReads}  ` +
      `violations ${failed.length}  wall time ${wallSeconds.toFixed(1)} s\n`,
  );
  for (const [kind, kindSeeds] of byKind) {
    const first = kindSeeds[0] ?? 0;
    process.stdout.write(
      `  ${kind}: ${kindSeeds.length} seeds, first at seed ${first} (${seeds.indexOf(first) + 1} seeds in): ${kindSeeds.slice(0, 20).join(' ')}\n`,
    );
  }
  if (failed.length > 0) process.exit(1);
}

main();
