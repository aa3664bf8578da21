import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Violation } from '../src/tools/jepsen/checker.ts';
import { describeOp, type Op } from '../src/tools/jepsen/history.ts';
import {
  DEFAULT_LINEARIZABILITY_BUDGET,
  type LinearizabilityVerdict,
} from '../src/tools/jepsen/linearizable.ts';
import { REPLAYED_KINDS } from '../src/tools/jepsen/log-answers.ts';
import type { LogCheckStats } from '../src/tools/jepsen/log-checker.ts';
import {
  NEMESES,
  type Nemesis,
  OPT_IN_NEMESES,
  type RegisterVerdict,
  runJepsen,
  WORKLOADS,
  type Workload,
} from '../src/tools/jepsen/run.ts';
import { countNemesis, countOps } from '../src/tools/jepsen/summary.ts';

/**
 * A Jepsen-style run against a local 3-node cluster of real processes:
 *
 *   npm run jepsen -- --seconds 30 --seed 7 --clients 4 --locks 2
 *
 * The seed reproduces the nemesis schedule and the clients' choices, not the OS
 * timing: two runs with one seed see the same faults, not the same history.
 * Exit code 1 when any checker finds a violation, or when the negative control (the
 * register that ignores tokens) went uncaught while clients were paused; 3 when nothing
 * was found but the linearizability search ran out of budget on some lock (unknown is
 * not a pass).
 */
const USAGE = `usage: npm run jepsen -- [options]
  --seconds N     how long the workload and nemeses run (default 30)
  --seed N        fixes the nemesis schedule and the clients' choices (default: random)
  --clients N     concurrent clients (default 4)
  --locks N       lock names they share (default 2)
  --nodes N       cluster size (default 3; majorities-ring partitions need 4 or more)
  --workload LIST comma-separated, from ${WORKLOADS.join(', ')}, or all (default: all):
                  locks: the clients above take single locks jepsen/N (checked for
                  linearizability too); sets: 3 more clients take 2-3 locks of
                  jepsen-set/0..3 at once (acquireAll, in a random order), sometimes one
                  alone or one held while asking for a set (a deadlock is refused);
                  semaphores: 3 more take 1-2 permits of jepsen-sem/0..1 (limit 2);
                  elections: 3 more campaign for jepsen-elect/0, lead, write, proclaim,
                  resign
  --nemesis LIST  comma-separated faults, from ${NEMESES.join(', ')}, or all (default: all);
                  partition needs root, ip and nft, clock needs libfaketime, disk-full
                  needs root for a tmpfs per node (else skipped); membership grows the
                  cluster by 2 nodes and shrinks it back, the leader first;
                  also ${OPT_IN_NEMESES.join(', ')}, only when named: the leader's clocks run
                  1.5-3x fast (beyond the drift bound), where real-time violations are
                  reported apart and only fencing must hold
  --results DIR   where the run's directory goes (default ./results): DIR/<run-id>/ holds
                  history.jsonl, the node logs, summary.json and index.html (the report)
  --lin-budget-ms N
                  wall time the linearizability search may take per lock; past it the
                  lock is reported unknown, not valid (default ${DEFAULT_LINEARIZABILITY_BUDGET.lockSearchMsMax})
  --help          this text`;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    seed: { type: 'string' },
    clients: { type: 'string', default: '4' },
    locks: { type: 'string', default: '2' },
    nodes: { type: 'string', default: '3' },
    workload: { type: 'string', default: 'all' },
    nemesis: { type: 'string', default: NEMESES.join(',') },
    results: { type: 'string', default: 'results' },
    'lin-budget-ms': {
      type: 'string',
      default: String(DEFAULT_LINEARIZABILITY_BUDGET.lockSearchMsMax),
    },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

function positiveInt(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    console.error(`--${name} must be a positive integer, got ${text}`);
    process.exit(2);
  }
  return value;
}

const seconds = positiveInt('seconds', values.seconds);
const clients = positiveInt('clients', values.clients);
const locks = positiveInt('locks', values.locks);
const nodes = positiveInt('nodes', values.nodes);
const lockSearchMsMax = positiveInt('lin-budget-ms', values['lin-budget-ms']);
const seed =
  values.seed === undefined
    ? Math.floor(Math.random() * 2 ** 31)
    : positiveInt('seed', values.seed);
const nemeses =
  values.nemesis.trim() === 'all'
    ? [...NEMESES]
    : values.nemesis.split(',').map((name) => name.trim());
const workloads =
  values.workload.trim() === 'all'
    ? [...WORKLOADS]
    : values.workload.split(',').map((name) => name.trim());
for (const name of workloads) {
  if (!WORKLOADS.includes(name as Workload)) {
    console.error(`--workload: unknown workload ${name}; choose from ${WORKLOADS.join(', ')}`);
    process.exit(2);
  }
}
for (const name of nemeses) {
  if (![...NEMESES, ...OPT_IN_NEMESES].includes(name as Nemesis)) {
    console.error(
      `--nemesis: unknown fault ${name}; choose from ${[...NEMESES, ...OPT_IN_NEMESES].join(', ')}`,
    );
    process.exit(2);
  }
}

console.log(
  `jepsen: seed ${seed}, ${seconds} s, ${nodes} nodes, ${clients} clients, ${locks} locks, workloads ${workloads.join(',')}, nemeses ${nemeses.join(',')} (the seed fixes the nemesis schedule, not the OS timing)`,
);
const wallStart = Date.now();
const result = await runJepsen({
  seconds,
  seed,
  clients,
  locks,
  nodes,
  workloads: workloads as Workload[],
  nemeses: nemeses as Nemesis[],
  results: values.results,
  linearizability: { ...DEFAULT_LINEARIZABILITY_BUDGET, lockSearchMsMax },
  // Kills and clock restarts take seconds each, so a short run could draw no partition,
  // clock or disk fault at all; each that was asked for (and can run) opens the run.
  opening: ['partition', 'clock', 'clock-beyond', 'disk-full', 'corrupt'],
  onProgress: ({ elapsedMs, ops, nemesis }) =>
    console.log(`  ${(elapsedMs / 1000).toFixed(0)} s: ${ops} ops, ${nemesis} nemesis events`),
});
const wallMs = Date.now() - wallStart;

const nemesis = countNemesis(result.nemesisEvents);

const { log, fenced, control } = result;
console.log(`\nsummary (seed ${seed}, wall ${(wallMs / 1000).toFixed(1)} s)`);
console.log(`  ops: ${result.ops.length}`);
for (const [kind, n] of Object.entries(countOps(result.ops)).sort())
  console.log(`    ${kind}: ok ${n.ok}, fail ${n.fail}, info ${n.info}`);
const sets = result.ops.filter((op) => op.kind === 'acquire-all');
if (sets.length > 0) {
  const refused = (prefix: string): number =>
    sets.filter((op) => op.outcome === 'fail' && op.error?.startsWith(prefix) === true).length;
  console.log(
    `  sets: ${sets.filter((op) => op.outcome === 'ok').length} granted, ${refused('LockSetNotAcquiredError')} not acquired, ${refused('deadlock:')} refused as deadlock, ${sets.filter((op) => op.outcome === 'info').length} unknown, of ${sets.length}`,
  );
}
const permitOps = result.ops.filter((op) => op.kind === 'acquire-permits');
if (permitOps.length > 0) {
  const permitsGranted = permitOps.filter((op) => op.outcome === 'ok');
  console.log(
    `  semaphores: ${permitsGranted.length} permit grants (${permitsGranted.reduce((sum, op) => sum + (op.permits ?? 0), 0)} permits) of ${permitOps.length} asked, ${permitOps.filter((op) => op.outcome === 'fail').length} not acquired, ${permitOps.filter((op) => op.outcome === 'info').length} unknown`,
  );
}
const campaigns = result.ops.filter((op) => op.kind === 'campaign');
if (campaigns.length > 0) {
  const count = (kind: string, outcome: string): number =>
    result.ops.filter((op) => op.kind === kind && op.outcome === outcome).length;
  console.log(
    `  elections: ${count('campaign', 'ok')} terms of ${campaigns.length} campaigns, ${count('campaign', 'fail')} not elected, ${count('campaign', 'info')} unknown; ${count('proclaim', 'ok')} proclaims, ${count('resign', 'ok')} resignations`,
  );
}
console.log(
  `  nemesis: ${result.nemesisEvents.length} events (${Object.entries(nemesis)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ')})`,
);
console.log(
  `  raft log: committed to index ${log.committedIndex} (replayed from ${log.startIndex}), ${log.grants} grants, ${log.grantsUnacknowledged} of them no client was told of`,
);
console.log(`  logs read: ${log.logs.join('; ')}`);
printLogAgreement(log);
printReplay(log);
printLinearizability(result.linearizability);
for (const { nemesis: name, reason } of result.skipped)
  console.log(`  ${name} nemesis: SKIPPED (not passed): ${reason}`);
printRegister('fenced register', fenced);
printRegister('control register (ignores tokens)', control);
const clientPauses = nemesis['client-pause'] ?? 0;
const controlCaught = control.stats.staleAccepted > 0;
console.log(
  `  negative control: ${controlCaught ? `caught (${control.stats.staleAccepted} stale writes accepted by the control register)` : `NOT caught (${clientPauses} client pauses)`}`,
);
if (nemeses.includes('clock-beyond'))
  console.log(
    `  beyond the drift bound (allowed, not failures): ${result.beyondBound.length} real-time violations${result.beyondBound.length > 0 ? ` (${[...new Set(result.beyondBound.map((v) => v.check))].join(', ')})` : ''}`,
  );
for (const verdict of result.faultVerdicts) {
  const stats = Object.entries(verdict.details.stats ?? {})
    .map(([name, value]) => `${name} ${value}`)
    .join(', ');
  console.log(`  ${verdict.name}: ${verdictText(verdict.valid)} (${stats})`);
}
console.log(`  violations: ${result.violations.length}`);
printViolations(result.violations, result.ops);
if (result.violations.length > 0) console.log(`  cluster logs kept in ${result.clusterDir}`);
if (result.resultsDir !== undefined) {
  console.log(`  results (history, node logs, summary.json): ${result.resultsDir}`);
  console.log(`  report: file://${resolve(join(result.resultsDir, 'index.html'))}`);
}
const controlMissed = clientPauses > 0 && !controlCaught;
const failed = result.violations.length > 0 || controlMissed;
process.exit(failed ? 1 : result.linearizability.verdict === 'unknown' ? 3 : 0);

function printLogAgreement(log: LogCheckStats): void {
  const { smallestCommitIndex, comparisons } = log.agreement;
  console.log(
    `  log agreement: every node's committed entries compared with the others' (all to index ${smallestCommitIndex} at least): ${comparisons} entry pairs equal`,
  );
}

function printReplay(log: LogCheckStats): void {
  // The kinds no workload of this run made are left out.
  const made = REPLAYED_KINDS.filter(
    (kind) => log.answers[kind].ok > 0 || Object.values(log.info[kind]).some((n) => n > 0),
  );
  const answers = made.map((kind) => {
    const { ok, reproduced, beforeStart } = log.answers[kind];
    return `${kind} ${reproduced}/${ok}${beforeStart > 0 ? ` (${beforeStart} before the replay's start, unchecked)` : ''}`;
  });
  console.log(`  ok answers the log replay reproduces, by request id: ${answers.join(', ')}`);
  const info = made
    .map((kind) => {
      const { tookEffect, noEffect, notInLog, unresolvable } = log.info[kind];
      const parts = [
        [tookEffect, 'took effect'],
        [noEffect, 'in the log without effect'],
        [notInLog, 'not in the log'],
        [unresolvable, 'unresolvable (no request id)'],
      ] as const;
      const said = parts.filter(([count]) => count > 0).map(([count, what]) => `${count} ${what}`);
      return said.length === 0 ? null : `${kind} ${said.join(', ')}`;
    })
    .filter((line) => line !== null);
  console.log(
    `  unanswered calls resolved by the log: ${info.length > 0 ? info.join('; ') : 'none'}`,
  );
}

function printLinearizability(verdict: LinearizabilityVerdict): void {
  const searchMs = verdict.locks.reduce((sum, lock) => sum + lock.searchMs, 0);
  console.log(
    `  linearizability (lease-aware model, ε ${DEFAULT_LINEARIZABILITY_BUDGET.clockDriftMax}): ${verdict.verdict.toUpperCase()}, ${verdict.ops} ops, search ${searchMs.toFixed(0)} ms in all (check ${verdict.checkMs.toFixed(0)} ms)`,
  );
  for (const lock of verdict.locks) {
    console.log(
      `    ${lock.lock}: ${lock.verdict}, ${lock.ops} ops, ${lock.statesExplored} states, ${lock.searchMs.toFixed(0)} ms`,
    );
  }
  if (verdict.locksLeftOut.length > 0) {
    console.log(
      `    left out (sets, semaphores, elections; the model knows single locks only): ${verdict.locksLeftOut.join(', ')}`,
    );
  }
  if (verdict.unknownLocks.length > 0) {
    console.log(
      `    UNKNOWN (search over ${lockSearchMsMax} ms, not valid): ${verdict.unknownLocks.join(', ')}`,
    );
  }
}

function verdictText(valid: boolean | 'unknown'): string {
  return valid === 'unknown' ? 'UNKNOWN (not passed)' : valid ? 'valid' : 'INVALID';
}

function printRegister(name: string, verdict: RegisterVerdict): void {
  const { stats } = verdict;
  console.log(
    `  ${name}: ${stats.accepted} accepted, ${stats.refused} refused, ${stats.staleAccepted} stale accepted; unanswered writes ${stats.infoLanded} landed, ${stats.infoLost} lost`,
  );
}

function printViolations(violations: readonly Violation[], ops: readonly Op[]): void {
  const byCheck = new Map<string, number>();
  for (const violation of violations)
    byCheck.set(violation.check, (byCheck.get(violation.check) ?? 0) + 1);
  for (const [check, count] of byCheck) console.log(`    ${check}: ${count}`);
  for (const violation of violations.slice(0, 20)) {
    console.log(`    [${violation.check}] ${violation.message}`);
    for (const id of violation.ops) {
      const op = ops[id];
      if (op !== undefined) console.log(`      ${describeOp(op)}`);
    }
  }
}
