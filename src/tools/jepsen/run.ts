import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeadlockError,
  DlmClient,
  DlmClientError,
  type LeadershipHandle,
  LockNotAcquiredError,
  type LockSetHandle,
  NotElectedError,
  type Session,
  SessionLostError,
} from '../../client/index.ts';
import type { LockLimits } from '../../lock/index.ts';
import { assert } from '../../util/assert.ts';
import { Prng } from '../../util/prng.ts';
import { ProcessCluster } from '../process-cluster.ts';
import { CallRecorder } from './call-recorder.ts';
import { checkHistory, type Violation } from './checker.ts';
import type { WorkerConfig } from './client-worker.ts';
import { checkCoordination } from './coordination-checker.ts';
import { FaultNemeses } from './fault-nemeses.ts';
import {
  type ClockFault,
  clockFaultsUnavailable,
  clockFaultTimestampFile,
  drawPartition,
  partitionedNodes,
  partitionNetwork,
  planClockFault,
  setClockOffset,
} from './faults.ts';
import {
  errorText,
  faultWindows,
  grantEnded,
  History,
  type NemesisEvent,
  now,
  type Op,
  writeHistory,
} from './history.ts';
import {
  checkLinearizable,
  DEFAULT_LINEARIZABILITY_BUDGET,
  type LinearizabilityBudget,
  type LinearizabilityVerdict,
} from './linearizable.ts';
import {
  checkAgainstLog,
  checkRegister,
  type LogCheckStats,
  type RegisterCheckStats,
} from './log-checker.ts';
import type { NetnsNetwork } from './netns.ts';
import { type ReplayedLog, readCommittedLog } from './raft-log.ts';
import {
  REGISTER_MODES,
  type RegisterClient,
  type RegisterDecision,
  RegisterProcess,
} from './register.ts';
import { openResults, runIdOf, writeResults } from './results.ts';
import type { CheckerVerdict } from './summary.ts';
import { sleepUnless, waitUntilServing } from './waits.ts';

// Moved to history.ts (the report reads them too); exported here for existing importers.
export { type FaultWindow, faultWindows, writeHistory } from './history.ts';

/**
 * A Jepsen-style run against real `dlm serve` processes: clients take exclusive locks
 * and write under them to two registers in a process of their own (one fenced, one
 * that ignores tokens: the negative control), while nemeses kill (-9) and restart
 * nodes, freeze them with SIGSTOP, freeze the registers, and pause clients past their
 * lease, partition the nodes' network (when namespaces can be made) and restart nodes
 * under a faked clock (when libfaketime is installed). Then the history
 * is checked on its own, against the committed Raft log read from the nodes' disks,
 * and against each register's record of what it accepted.
 *
 * The seed fixes the nemesis schedule (which fault, which node unless it is "the
 * leader", how long) and the clients' choices; the OS timing, and so the history, is
 * not reproducible.
 */
export const NEMESES = [
  'kill',
  'pause',
  'register-pause',
  'client-pause',
  'partition',
  'clock',
  'disk-full',
  'corrupt',
  'membership',
] as const;
/**
 * Faults only run when named: `clock-beyond` runs the leader's clocks 1.5–3 times fast,
 * past the drift bound, where real-time mutual exclusion may be lost (and is then
 * reported apart, as expected) but fencing must still hold.
 */
/**
 * The nodes still take snapshots (and restart from them), but keep every entry behind
 * them, so the log replay starts at index 1 and checks every answer of a long run. A
 * node the membership nemesis adds again starts empty and is brought up from the
 * leader's latest snapshot; its log from before is kept by a copy made before the wipe
 * (log-archive.ts).
 */
const KEEP_WHOLE_LOG = { runtime: { compactionRetainEntries: 1_000_000 } };

export const OPT_IN_NEMESES = ['clock-beyond'] as const;
export type Nemesis = (typeof NEMESES)[number] | (typeof OPT_IN_NEMESES)[number];

/**
 * What the clients do. `locks`: single exclusive locks (`jepsen/N`, the lease-aware
 * linearizability checker's). `sets` (issue 17): a few clients of their own take 2–3
 * locks of a pool of their own (`jepsen-set/N`) at once with acquireAll, in a random
 * order (one by one, they would deadlock), sometimes holding one lock of the pool alone
 * while they ask for a set (which may close a wait-for cycle, refused as a deadlock),
 * sometimes one lock alone; they write to the registers under the set's token for
 * each of its locks. `semaphores`: clients of their own take 1–2 permits of
 * `jepsen-sem/N` (limit 2), hold them a while and release them (no register writes: the
 * registers fence one writer per name, and a semaphore has several). `elections`: clients
 * of their own campaign for `jepsen-elect/0` with a value, lead a while (writing to the
 * registers under the term's token, sometimes proclaiming a new value) and resign.
 */
export const WORKLOADS = ['locks', 'sets', 'semaphores', 'elections'] as const;
export type Workload = (typeof WORKLOADS)[number];

export interface JepsenOptions {
  readonly seconds: number;
  readonly seed: number;
  readonly clients: number;
  readonly locks: number;
  /** Cluster size (3 unless given); majorities-ring partitions need 4 or more. */
  readonly nodes?: number;
  /** Which faults to inject; all of them unless given. */
  readonly nemeses?: readonly Nemesis[];
  /**
   * Faults the nemesis injects first, in this order (those enabled and available),
   * before its seeded choice takes over: a short run then surely has each of them.
   */
  readonly opening?: readonly Nemesis[];
  /** How long the linearizability search may take per lock, and the drift bound it assumes. */
  readonly linearizability?: LinearizabilityBudget;
  /** Called every few seconds while the run goes on. */
  readonly onProgress?: (progress: { elapsedMs: number; ops: number; nemesis: number }) => void;
  /** Where `<run-id>/` goes with the history, logs, summary and report; none unless given. */
  readonly results?: string;
  /** Which workloads run (see WORKLOADS); all of them unless given. */
  readonly workloads?: readonly Workload[];
  /**
   * Test only, to show the checkers catch it: the chance that a set client pretends its
   * set was granted (and later released) without asking the cluster, as a broken client
   * library would. Never in a real run.
   */
  readonly fakeSetGrantChance?: number;
}

export interface RegisterVerdict {
  readonly violations: readonly Violation[];
  readonly stats: RegisterCheckStats;
  readonly decisions: readonly RegisterDecision[];
}

export interface JepsenResult {
  readonly ops: readonly Op[];
  /**
   * Everything that must hold: the history, its linearizability, the log and the
   * replay of every answer, the fenced register.
   */
  readonly violations: readonly Violation[];
  /** The linearizability checker's verdict, per lock, with its search times. */
  readonly linearizability: LinearizabilityVerdict;
  readonly nemesisEvents: readonly NemesisEvent[];
  readonly log: LogCheckStats;
  /** The committed log as replayed: the ground truth the checks used. */
  readonly replayed: ReplayedLog;
  readonly fenced: RegisterVerdict;
  /** The negative control: the register that ignores tokens. Its violations are expected. */
  readonly control: RegisterVerdict;
  /** performance.now() when the workload began and when holds were closed. */
  readonly startMs: number;
  readonly endMs: number;
  readonly clusterDir: string;
  /**
   * Real-time violations (mutual-exclusion, granted-while-held) around a clock fault
   * beyond the drift bound: allowed there, reported apart. Empty without clock-beyond.
   */
  readonly beyondBound: readonly Violation[];
  /** Nemeses asked for that could not run here, and why: skipped, never passed. */
  readonly skipped: readonly { nemesis: Nemesis; reason: string }[];
  /**
   * The verdicts of the nemeses that check what they did (disk full, corrupt record,
   * membership, client pause; see fault-nemeses.ts); their violations are in `violations`.
   */
  readonly faultVerdicts: readonly CheckerVerdict[];
  /** The run's results directory, when options.results asked for one. */
  readonly resultsDir?: string;
}

const SESSION_TTL_MS = 3_000;
/**
 * The holds the checker sees end when a session's signal fires, by this process's
 * timers. Under a loaded test run (other suites in parallel on 2 cores) a timer can fire
 * hundreds of ms late, which is a client stall: only fencing covers that, and the
 * register check does. A margin of a third of the TTL keeps the real-time mutual
 * exclusion check about the service rather than about the test machine's load.
 */
const SAFETY_MARGIN_MS = 1_000;
const ACQUIRE_WAIT_MS = 1_000;
const CALL_TIMEOUT_MS = 5_000;
/** How often an acquire is abandoned by its caller, and after how long. */
const GIVE_UP_CHANCE = 0.1;
const GIVE_UP_AFTER_MS: readonly [number, number] = [1, 60];
/** A register call that takes longer is 'info': the write may still land. */
const WRITE_TIMEOUT_MS = 1_000;

interface Stop {
  clients: boolean;
  nemesis: boolean;
}

export async function runJepsen(options: JepsenOptions): Promise<JepsenResult> {
  const startedAt = new Date();
  const nemeses = new Set(options.nemeses ?? NEMESES);
  const prng = new Prng(options.seed);
  const nemesisPrng = prng.fork();
  const clientPausePrng = prng.fork();
  const clientPrngs = Array.from({ length: options.clients }, () => prng.fork());
  const membershipPrng = prng.fork();
  // Forked last, so the other draws of a seed are those of runs before the workload.
  const workloads = new Set(options.workloads ?? WORKLOADS);
  const setPrngs = Array.from({ length: SET_CLIENTS }, () => prng.fork());
  const semaphorePrngs = Array.from({ length: SEMAPHORE_CLIENTS }, () => prng.fork());
  const electionPrngs = Array.from({ length: ELECTION_CLIENTS }, () => prng.fork());
  const semaphores = Array.from({ length: SEMAPHORES }, (_, i) => `jepsen-sem/${i}`);
  const elections = Array.from({ length: ELECTIONS }, (_, i) => `jepsen-elect/${i}`);
  const locks = Array.from({ length: options.locks }, (_, i) => `jepsen/${i}`);
  const setLocks = Array.from({ length: SET_LOCKS }, (_, i) => `jepsen-set/${i}`);

  const size = options.nodes ?? 3;
  // The membership nemesis adds nodes beyond the founders: their ports are taken now.
  const total = FaultNemeses.clusterSize(size, nemeses);
  const skipped: { nemesis: Nemesis; reason: string }[] = [];
  // Partitions need every node in a namespace of its own; the nodes are spawned there
  // (the pid is the node's, so kill and SIGSTOP still reach it) and listen on their
  // bridge addresses, which this process (the root namespace) reaches directly. Their
  // data stays on the shared filesystem, where the log reading finds it.
  let network: NetnsNetwork | null = null;
  if (nemeses.has('partition')) {
    const ids = Array.from({ length: total }, (_, i) => `n${i + 1}`);
    const made = await partitionNetwork(ids);
    network = made.network;
    if (made.skipped !== null) skipped.push({ nemesis: 'partition', reason: made.skipped });
  }
  for (const nemesis of ['clock', 'clock-beyond'] as const) {
    const reason = nemeses.has(nemesis) ? clockFaultsUnavailable() : null;
    if (reason !== null) skipped.push({ nemesis, reason });
  }
  for (const { nemesis, reason } of skipped) {
    console.log(`${nemesis} nemesis skipped: ${reason}`);
    nemeses.delete(nemesis);
  }
  const spawnIn = network;
  const cluster =
    spawnIn === null
      ? await ProcessCluster.create(total, KEEP_WHOLE_LOG, size)
      : ProcessCluster.withNodes(
          partitionedNodes(spawnIn),
          KEEP_WHOLE_LOG,
          size,
          (id, file, args, spawnOptions) => spawnIn.spawn(id, file, args, spawnOptions),
        );
  const history = new History();
  const nemesisEvents: NemesisEvent[] = [];
  const { faults, skipped: faultsSkipped } = FaultNemeses.prepare(cluster, nemeses, nemesisEvents);
  for (const { nemesis, reason } of faultsSkipped) {
    console.log(`${nemesis} nemesis skipped: ${reason}`);
    skipped.push({ nemesis, reason });
    nemeses.delete(nemesis);
  }
  const stop: Stop = { clients: false, nemesis: false };
  const connections: DlmClient[] = [];
  let registerProcess: RegisterProcess | null = null;
  let registers: RegisterClient[] = [];
  let startMs = now();
  let endMs = startMs;
  let commitIndexHint = 0;
  try {
    cluster.startAll();
    // The register process starts while the nodes elect a leader.
    registerProcess = await RegisterProcess.start(join(cluster.dir, 'registers.log'));
    const started = registerProcess;
    registers = REGISTER_MODES.map((mode) => started.register(mode));
    await cluster.waitForLeader(30_000);
    const endpoints = cluster.nodes.map((node) => node.clientAddress);
    const connectAs = (recorder: CallRecorder): DlmClient => {
      const connection = new DlmClient({
        endpoints,
        attemptTimeoutMs: 1_000,
        onCall: recorder.observer,
      });
      connections.push(connection);
      return connection;
    };
    if (nemeses.has('client-pause')) {
      const config = workerConfig(clientPausePrng, started.port, endpoints, locks);
      await faults.startClientWorker({ config, history, events: nemesisEvents, stop });
    }
    startMs = now();

    const client = (name: string, clientPrng: Prng, names: readonly string[]): ClientContext => {
      const recorder = new CallRecorder(history, name);
      return {
        name,
        prng: clientPrng,
        locks: names,
        history,
        recorder,
        registers,
        stop,
        connection: connectAs(recorder),
        fakeSetGrantChance: options.fakeSetGrantChance ?? 0,
      };
    };
    const clientLoops = [
      ...(workloads.has('locks')
        ? clientPrngs.map((clientPrng, index) =>
            clientLoop(client(`c${index}`, clientPrng, locks), oneHold),
          )
        : []),
      ...(workloads.has('sets')
        ? setPrngs.map((setPrng, index) =>
            clientLoop(client(`set${index}`, setPrng, setLocks), setRound),
          )
        : []),
      ...(workloads.has('semaphores')
        ? semaphorePrngs.map((semaphorePrng, index) =>
            clientLoop(client(`sem${index}`, semaphorePrng, semaphores), permitRound),
          )
        : []),
      ...(workloads.has('elections')
        ? electionPrngs.map((electionPrng, index) =>
            clientLoop(client(`elect${index}`, electionPrng, elections), leadershipRound),
          )
        : []),
    ];
    const nemesis = nemesisLoop({
      cluster,
      registers: registerProcess,
      network,
      enabled: nemeses,
      opening: (options.opening ?? []).filter((kind) => nemeses.has(kind)),
      prng: nemesisPrng,
      events: nemesisEvents,
      stop,
      faults,
    });
    const faultLoops = faults.loops(
      { membership: membershipPrng, clientPause: clientPausePrng },
      stop,
      SESSION_TTL_MS,
    );

    const deadline = startMs + options.seconds * 1_000;
    let lastProgress = now();
    while (now() < deadline) {
      await sleep(Math.min(250, Math.max(1, deadline - now())));
      if (options.onProgress !== undefined && now() - lastProgress >= 3_000) {
        lastProgress = now();
        options.onProgress({
          elapsedMs: now() - startMs,
          ops: history.ops.length,
          nemesis: nemesisEvents.length,
        });
      }
    }

    // Heal: the nemeses end their current fault, then everything runs; the clients finish
    // the iteration they are in (every call is bounded) and release.
    stop.nemesis = true;
    await Promise.all([nemesis, ...faultLoops]);
    await network?.heal();
    for (const id of faults.members.ids()) {
      if (!cluster.isRunning(id)) {
        cluster.start(id);
        nemesisEvents.push({ atMs: now(), kind: 'restart', target: id });
      }
    }
    await cluster.waitForLeader(30_000);
    stop.clients = true;
    await Promise.all([...clientLoops, faults.closeClientWorker()]);
    endMs = now();
    commitIndexHint = await highestCommitIndex(cluster);
  } catch (error) {
    registerProcess?.stop();
    throw error;
  } finally {
    for (const connection of connections) connection.close();
    await faults.closeClientWorker();
    await cluster.stopAll();
    // The data directories are on the shared filesystem: the namespaces can go now.
    await network?.close();
    faults.releaseDisks();
  }
  // Copied before the checks, which remove the cluster's directory (and logs) on a pass.
  const resultsDir =
    options.results === undefined
      ? null
      : openResults(options.results, runIdOf(startedAt, options.seed), cluster.dir);
  try {
    const result = await checkRun({
      skipped,
      faults,
      linearizability: options.linearizability ?? DEFAULT_LINEARIZABILITY_BUDGET,
      ops: history.ops,
      nemesisEvents,
      cluster,
      registers,
      commitIndexHint,
      startMs,
      endMs,
    });
    if (resultsDir === null) return result;
    const wallMs = Date.now() - startedAt.getTime();
    writeResults(resultsDir, { startedAt, wallMs, options: { ...options, nodes: size } }, result);
    return { ...result, resultsDir };
  } finally {
    registerProcess?.stop();
  }
}

async function checkRun(run: {
  skipped: readonly { nemesis: Nemesis; reason: string }[];
  faults: FaultNemeses;
  linearizability: LinearizabilityBudget;
  ops: readonly Op[];
  nemesisEvents: readonly NemesisEvent[];
  cluster: ProcessCluster;
  registers: readonly RegisterClient[];
  commitIndexHint: number;
  startMs: number;
  endMs: number;
}): Promise<JepsenResult> {
  const { ops, cluster, endMs } = run;
  const log = await readCommittedLog(
    [
      ...cluster.nodes.map((node) => ({ id: node.id, path: join(cluster.dir, 'data', node.id) })),
      ...run.faults.logArchive.directories(),
    ],
    run.commitIndexHint,
    configuredLockRules(cluster.configPath),
  );
  const [fencedRegister, controlRegister] = run.registers as [RegisterClient, RegisterClient];
  const verdict = async (register: RegisterClient): Promise<RegisterVerdict> => {
    const decisions = await register.decisions();
    return { ...checkRegister(ops, decisions, log, register.mode), decisions };
  };
  const fenced = await verdict(fencedRegister);
  const control = await verdict(controlRegister);
  const againstLog = checkAgainstLog(ops, log, endMs);
  const linearizability = checkLinearizable(ops, run.linearizability);
  const found = [
    ...checkHistory(ops, endMs),
    // Semaphores and elections: nothing to find until a workload records their ops.
    ...checkCoordination(ops, endMs),
    ...linearizability.violations,
    ...againstLog.violations,
    ...fenced.violations,
    ...run.faults.violations(),
  ];
  const excused = beyondBoundWindows(run.nemesisEvents, endMs);
  const isExcused = (violation: Violation): boolean =>
    REAL_TIME_CHECKS.has(violation.check) &&
    violation.ops.some((id) => {
      const op = ops[id];
      return (
        op !== undefined &&
        excused.some((w) => op.invokeMs < w.to && (op.lostAtMs ?? op.completeMs ?? endMs) > w.from)
      );
    });
  const violations = found.filter((violation) => !isExcused(violation));
  const beyondBound = found.filter(isExcused);
  // Kept for a reader when something failed or could not be decided.
  if (violations.length === 0 && linearizability.verdict !== 'unknown') cluster.remove();
  else writeHistory(join(cluster.dir, 'history.jsonl'), ops, run.nemesisEvents);
  return {
    ops,
    violations,
    linearizability,
    nemesisEvents: run.nemesisEvents,
    log: againstLog.stats,
    replayed: log,
    fenced,
    control,
    startMs: run.startMs,
    endMs,
    clusterDir: cluster.dir,
    beyondBound,
    skipped: run.skipped,
    faultVerdicts: run.faults.verdicts(),
  };
}

/**
 * The checks that compare real times; every other check holds whatever the clocks do.
 * Linearizability does: the model ends a lease no sooner than the drift bound allows.
 */
const REAL_TIME_CHECKS: ReadonlySet<string> = new Set([
  'mutual-exclusion',
  'granted-while-held',
  'linearizability',
]);

/** The `lock` section of the nodes' config file: the rules they apply until SetRules. */
function configuredLockRules(configPath: string): Partial<LockLimits> {
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as { lock?: Partial<LockLimits> };
  return config.lock ?? {};
}

/**
 * When a node ran its clocks beyond the drift bound, widened by a session TTL after it:
 * a lease the fast leader cut short can overlap a later hold until then.
 */
function beyondBoundWindows(
  events: readonly NemesisEvent[],
  endMs: number,
): { from: number; to: number }[] {
  return faultWindows(events, endMs)
    .filter((w) => w.kind === 'clock' && w.detail?.includes('beyond the drift bound') === true)
    .map((w) => ({ from: w.from, to: w.to + SESSION_TTL_MS }));
}

/** The highest commit index any node reports: the disk may lag it (commits alone are not synced). */
async function highestCommitIndex(cluster: ProcessCluster): Promise<number> {
  let highest = 0;
  for (const node of cluster.nodes) {
    try {
      const status = await cluster.call(node.id, 'Status', {}, 2_000, 'Cluster');
      highest = Math.max(highest, Number(status.commit_index ?? 0));
    } catch {
      // The disks still say what they hold; this is only a hint.
    }
  }
  return highest;
}

interface ClientContext {
  readonly name: string;
  readonly prng: Prng;
  readonly locks: readonly string[];
  readonly history: History;
  /** Records the session calls, and the request ids of the acquires and releases. */
  readonly recorder: CallRecorder;
  readonly registers: readonly RegisterClient[];
  readonly stop: Stop;
  readonly connection: DlmClient;
  /** See JepsenOptions.fakeSetGrantChance: 0 in every real run. */
  readonly fakeSetGrantChance: number;
}

/** One round of a client in a session; false when the session may not be used again. */
type Round = (ctx: ClientContext, session: Session, acquires: Op[]) => Promise<boolean>;

/**
 * The client worker the client-pause nemesis stops: a client like the others, in a
 * process of its own, with the same lease and timeouts.
 */
function workerConfig(
  prng: Prng,
  registerPort: number,
  endpoints: readonly string[],
  locks: readonly string[],
): WorkerConfig {
  return {
    name: 'w0',
    endpoints,
    registerPort,
    seed: prng.nextUint32(),
    locks,
    ttlMs: SESSION_TTL_MS,
    safetyMarginMs: SAFETY_MARGIN_MS,
    acquireWaitMs: ACQUIRE_WAIT_MS,
    callTimeoutMs: CALL_TIMEOUT_MS,
    writeTimeoutMs: WRITE_TIMEOUT_MS,
  };
}

/** One client: sessions one after another; in each, rounds (acquire, write a few times, release). */
async function clientLoop(ctx: ClientContext, round: Round): Promise<void> {
  while (!ctx.stop.clients) {
    let session: Session;
    try {
      session = await ctx.connection.openSession({
        ttlMs: SESSION_TTL_MS,
        safetyMarginMs: SAFETY_MARGIN_MS,
        clientName: ctx.name,
        callTimeoutMs: CALL_TIMEOUT_MS,
      });
    } catch {
      await sleep(100);
      continue;
    }
    // The acquires of this session: when its signal fires, their holds end.
    const acquires: Op[] = [];
    const onLost = (): void => {
      const at = now();
      for (const op of acquires) op.lostAtMs ??= at;
    };
    session.signal.addEventListener('abort', onLost, { once: true });
    let usable = true;
    while (usable && !ctx.stop.clients && session.alive) {
      usable = await round(ctx, session, acquires);
    }
    // Giving the session up ends its holds for the checker, if its signal has not: the
    // client acts under none of them again (after a pause cut short at the run's end,
    // say). Closing aborts the signal too, which is not a lost lease.
    onLost();
    session.signal.removeEventListener('abort', onLost);
    await session.close().catch(() => {});
  }
}

/** A grant a client holds: what it writes under, and how it gives it back. */
interface HeldGrant {
  /** The lock its release names (a set's first lock in code-unit order). */
  readonly lock: string;
  /** Every lock it covers. */
  readonly locks: readonly string[];
  readonly token: string;
  readonly isSet: boolean;
  readonly release: () => Promise<void>;
}

/** 'fail': certainly not held. 'info': unknown, so the session must be given up. */
type AcquireOutcome = HeldGrant | 'fail' | 'info';

/** One exclusive lock: acquire, write a few times, release. */
async function oneHold(ctx: ClientContext, session: Session, acquires: Op[]): Promise<boolean> {
  const grant = await acquireOne(ctx, session, acquires, ctx.prng.pick(ctx.locks));
  if (grant === 'info') return false;
  if (grant === 'fail') {
    await sleep(ctx.prng.intBetween(0, 50));
    return true;
  }
  return writeThenRelease(ctx, session, [grant]);
}

/**
 * How often a set client takes one lock of its pool alone (a single hold among the sets:
 * mutual exclusion and fencing are checked across both), and how often it holds one
 * while it asks for a set of others. Two clients doing that at once can wait for each
 * other's lock: the cluster refuses the second wait as a deadlock.
 */
const SET_SINGLE_CHANCE = 0.2;
const SET_NESTED_CHANCE = 0.3;
const SET_CLIENTS = 3;
const SET_LOCKS = 4;
const SET_SIZE: readonly [number, number] = [2, 3];

/** A set client's round: maybe one lock alone, maybe one held while a set is asked for. */
async function setRound(ctx: ClientContext, session: Session, acquires: Op[]): Promise<boolean> {
  const { prng } = ctx;
  if (prng.chance(SET_SINGLE_CHANCE)) return oneHold(ctx, session, acquires);
  const held: HeldGrant[] = [];
  if (prng.chance(SET_NESTED_CHANCE)) {
    const outer = await acquireOne(ctx, session, acquires, prng.pick(ctx.locks));
    if (outer === 'info') return false;
    if (outer !== 'fail') held.push(outer);
  }
  const free = ctx.locks.filter((lock) => !held.some((grant) => grant.locks.includes(lock)));
  const names = prng.shuffle(free).slice(0, prng.intBetween(...SET_SIZE));
  const set = await acquireSet(ctx, session, acquires, names);
  if (set === 'info') return false; // Closing the session frees the outer lock too.
  if (set !== 'fail') held.push(set);
  else await sleep(prng.intBetween(0, 50));
  return held.length === 0 || (await writeThenRelease(ctx, session, held));
}

/** Acquires `lock` alone, recorded as an 'acquire'. */
async function acquireOne(
  ctx: ClientContext,
  session: Session,
  acquires: Op[],
  lock: string,
): Promise<AcquireOutcome> {
  const { history, name, prng } = ctx;
  const acquireOp = history.invoke(name, 'acquire', lock, { session: session.id });
  // A tag unique in the run: the call recorder finds this op's call by it.
  const owner = `${name}#${acquireOp.id}`;
  acquireOp.owner = owner;
  acquires.push(acquireOp);
  // Some acquires are given up after a few ms (a caller's deadline): sent or not, applied
  // or not, granted or queued, their outcome is unknown, and only the log can say.
  const giveUpAfterMs = prng.chance(GIVE_UP_CHANCE) ? prng.intBetween(...GIVE_UP_AFTER_MS) : null;
  try {
    const handle = await ctx.recorder.during(acquireOp, () =>
      session.acquire(lock, {
        waitMs: ACQUIRE_WAIT_MS,
        owner,
        ...(giveUpAfterMs === null ? {} : { signal: AbortSignal.timeout(giveUpAfterMs) }),
      }),
    );
    history.complete(acquireOp, 'ok', { token: handle.token });
    return {
      lock,
      locks: [lock],
      token: handle.token,
      isSet: false,
      release: () => handle.release(),
    };
  } catch (error) {
    return failedAcquire(ctx, acquireOp, error);
  }
}

/**
 * Acquires every lock of `names` at once, asked for in that order, recorded as an
 * 'acquire-all' whose `lock` is the one the set is released by.
 */
async function acquireSet(
  ctx: ClientContext,
  session: Session,
  acquires: Op[],
  names: readonly string[],
): Promise<AcquireOutcome> {
  const { history, name, prng } = ctx;
  const releasedBy = [...names].sort()[0] as string;
  const op = history.invoke(name, 'acquire-all', releasedBy, {
    session: session.id,
    locks: names,
  });
  const owner = `${name}#${op.id}`;
  op.owner = owner;
  acquires.push(op);
  if (ctx.fakeSetGrantChance > 0 && prng.chance(ctx.fakeSetGrantChance))
    return fakeSetGrant(ctx, op, names);
  const giveUpAfterMs = prng.chance(GIVE_UP_CHANCE) ? prng.intBetween(...GIVE_UP_AFTER_MS) : null;
  let handle: LockSetHandle;
  try {
    handle = await ctx.recorder.during(op, () =>
      session.acquireAll(
        names.map((lock) => ({ name: lock })),
        {
          waitMs: ACQUIRE_WAIT_MS,
          owner,
          ...(giveUpAfterMs === null ? {} : { signal: AbortSignal.timeout(giveUpAfterMs) }),
        },
      ),
    );
  } catch (error) {
    return failedAcquire(ctx, op, error);
  }
  history.complete(op, 'ok', { token: handle.token });
  // The checkers match the set's release by this lock (checker.ts holdsOf).
  assert(handle.lock === releasedBy, `the set is released by ${handle.lock}, not ${releasedBy}`);
  return {
    lock: releasedBy,
    locks: names,
    token: handle.token,
    isSet: true,
    release: () => handle.release(),
  };
}

/**
 * The test-only broken client (JepsenOptions.fakeSetGrantChance): told granted with the
 * token of the client's latest real grant, without a call, and released without one.
 */
function fakeSetGrant(ctx: ClientContext, op: Op, names: readonly string[]): HeldGrant {
  const granted = ctx.history.ops.filter(
    (other) => other.client === ctx.name && other.outcome === 'ok' && other.token !== undefined,
  );
  const token = granted[granted.length - 1]?.token ?? '1';
  ctx.history.complete(op, 'ok', { token });
  return { lock: op.lock, locks: names, token, isSet: true, release: async () => {} };
}

/** Records a failed acquire or acquire-all: 'fail' when it certainly holds nothing. */
function failedAcquire(ctx: ClientContext, op: Op, error: unknown): 'fail' | 'info' {
  if (
    error instanceof LockNotAcquiredError ||
    error instanceof NotElectedError ||
    error instanceof DeadlockError ||
    error instanceof SessionLostError ||
    grantEnded(error)
  ) {
    // Not acquired (the wait ended; a set's LockSetNotAcquiredError and a semaphore's
    // PermitsNotAcquiredError are ones; not elected is the same for a campaign), refused as a
    // deadlock (nothing was queued), or refused before sending: certainly not granted.
    // Or granted and ended before the answer: held by nobody now.
    ctx.history.complete(op, 'fail', { error: errorText(error) });
    return 'fail';
  }
  // A timeout or a node that went away: the grant may have happened. The session may
  // hold the lock on the cluster without knowing its token: give the session up.
  ctx.history.complete(op, 'info', { error: errorText(error) });
  return 'info';
}

/** Writes a few times under every grant held (each lock of a set), then releases them, last first. */
async function writeThenRelease(
  ctx: ClientContext,
  session: Session,
  held: readonly HeldGrant[],
): Promise<boolean> {
  const { prng } = ctx;
  const writes = prng.intBetween(1, 4);
  for (let i = 0; i < writes; i++) {
    if (!session.alive) return false; // Stop at once: the lease may be gone.
    await Promise.all(
      held.flatMap((grant) =>
        grant.locks.flatMap((lock) =>
          ctx.registers.map((register) => write(ctx, register, session, lock, grant.token)),
        ),
      ),
    );
    await sleep(prng.intBetween(5, 60));
  }
  for (const grant of [...held].reverse()) {
    if (!session.alive) return false;
    if (!(await releaseGrant(ctx, session, grant))) return false;
  }
  return true;
}

/** Releases `grant`, recorded as `kind` (a leader's release is its resignation). */
async function releaseGrant(
  ctx: ClientContext,
  session: Session,
  grant: HeldGrant,
  kind: 'release' | 'resign' = 'release',
): Promise<boolean> {
  const releaseOp = ctx.history.invoke(ctx.name, kind, grant.lock, {
    session: session.id,
    token: grant.token,
    ...(grant.isSet ? { locks: grant.locks } : {}),
  });
  try {
    await ctx.recorder.during(releaseOp, grant.release);
    ctx.history.complete(releaseOp, 'ok');
    return true;
  } catch (error) {
    // Unknown whether it was applied; the hold ended at its invocation either way.
    ctx.history.complete(releaseOp, 'info', { error: errorText(error) });
    // The session may still hold the lock: a re-acquire would hand back the same grant.
    return false;
  }
}

/** The semaphores workload: its clients, semaphores, and their limit. */
const SEMAPHORE_CLIENTS = 3;
const SEMAPHORES = 2;
const SEMAPHORE_LIMIT = 2;
/** How long a client holds its permits (ms): long enough for the others to contend. */
const PERMIT_HOLD_MS: readonly [number, number] = [10, 150];

/** Takes 1–2 permits of a semaphore, holds them a while, releases them. */
async function permitRound(ctx: ClientContext, session: Session, acquires: Op[]): Promise<boolean> {
  const { history, name, prng } = ctx;
  const semaphore = prng.pick(ctx.locks);
  const permits = prng.intBetween(1, SEMAPHORE_LIMIT);
  const op = history.invoke(name, 'acquire-permits', semaphore, {
    session: session.id,
    permits,
    limit: SEMAPHORE_LIMIT,
  });
  const owner = `${name}#${op.id}`;
  op.owner = owner;
  acquires.push(op);
  const giveUpAfterMs = prng.chance(GIVE_UP_CHANCE) ? prng.intBetween(...GIVE_UP_AFTER_MS) : null;
  let token: string;
  let release: () => Promise<void>;
  try {
    const handle = await ctx.recorder.during(op, () =>
      session.semaphore(semaphore, SEMAPHORE_LIMIT).acquire({
        permits,
        waitMs: ACQUIRE_WAIT_MS,
        owner,
        ...(giveUpAfterMs === null ? {} : { signal: AbortSignal.timeout(giveUpAfterMs) }),
      }),
    );
    token = handle.token;
    release = () => handle.release();
  } catch (error) {
    const failed = failedAcquire(ctx, op, error);
    if (failed === 'fail') await sleep(prng.intBetween(0, 50));
    return failed === 'fail';
  }
  history.complete(op, 'ok', { token });
  await sleep(prng.intBetween(...PERMIT_HOLD_MS));
  if (!session.alive) return false;
  const grant = { lock: semaphore, locks: [semaphore], token, isSet: false, release };
  return releaseGrant(ctx, session, grant);
}

/** The elections workload: its candidates and elections. */
const ELECTION_CLIENTS = 3;
const ELECTIONS = 1;
/** How often a leader proclaims a new value between its writes. */
const PROCLAIM_CHANCE = 0.4;

/**
 * Campaigns with a value; once leading, writes 1–4 times under the term's token
 * (proclaiming a new value now and then), then resigns.
 */
async function leadershipRound(
  ctx: ClientContext,
  session: Session,
  acquires: Op[],
): Promise<boolean> {
  const { history, name, prng } = ctx;
  const election = prng.pick(ctx.locks);
  const op = history.invoke(name, 'campaign', election, { session: session.id });
  const owner = `${name}#${op.id}`;
  op.owner = owner;
  const value = owner;
  op.value = value;
  acquires.push(op);
  const giveUpAfterMs = prng.chance(GIVE_UP_CHANCE) ? prng.intBetween(...GIVE_UP_AFTER_MS) : null;
  let handle: LeadershipHandle;
  try {
    handle = await ctx.recorder.during(op, () =>
      session.campaign(election, value, {
        waitMs: ACQUIRE_WAIT_MS,
        owner,
        ...(giveUpAfterMs === null ? {} : { signal: AbortSignal.timeout(giveUpAfterMs) }),
      }),
    );
  } catch (error) {
    const failed = failedAcquire(ctx, op, error);
    if (failed === 'fail') await sleep(prng.intBetween(0, 50));
    return failed === 'fail';
  }
  history.complete(op, 'ok', { token: handle.token });
  const writes = prng.intBetween(1, 4);
  for (let i = 0; i < writes; i++) {
    if (!session.alive) return false; // Stop leading at once: the lease may be gone.
    if (prng.chance(PROCLAIM_CHANCE) && !(await proclaim(ctx, session, handle, `${value}.${i}`)))
      return false;
    await Promise.all(
      ctx.registers.map((register) => write(ctx, register, session, election, handle.token)),
    );
    await sleep(prng.intBetween(5, 60));
  }
  if (!session.alive) return false;
  const term = {
    lock: election,
    locks: [election],
    token: handle.token,
    isSet: false,
    release: () => handle.resign(),
  };
  return releaseGrant(ctx, session, term, 'resign');
}

/** Proclaims `value` as the leader's; false when the term may be over (give the session up). */
async function proclaim(
  ctx: ClientContext,
  session: Session,
  handle: LeadershipHandle,
  value: string,
): Promise<boolean> {
  const op = ctx.history.invoke(ctx.name, 'proclaim', handle.election, {
    session: session.id,
    token: handle.token,
    value,
  });
  try {
    await ctx.recorder.during(op, () => handle.proclaim(value));
    ctx.history.complete(op, 'ok');
    return true;
  } catch (error) {
    // Refused (the term ended: notHolder, staleToken) or unknown: lead no more.
    const refused = error instanceof DlmClientError && !error.outcomeUnknown;
    ctx.history.complete(op, refused ? 'fail' : 'info', { error: errorText(error) });
    return false;
  }
}

async function write(
  ctx: ClientContext,
  register: RegisterClient,
  session: Session,
  lock: string,
  token: string,
): Promise<void> {
  const op = ctx.history.invoke(ctx.name, 'write', lock, {
    session: session.id,
    token,
    register: register.mode,
  });
  const answer = await register.write(
    { lock, token, client: ctx.name, session: session.id, writeId: String(op.id) },
    WRITE_TIMEOUT_MS,
  );
  if (answer.outcome === 'info') ctx.history.complete(op, 'info', { error: answer.error });
  else ctx.history.complete(op, answer.outcome);
}

interface NemesisContext {
  readonly cluster: ProcessCluster;
  readonly registers: RegisterProcess;
  /** The nodes' namespaces, when partitions can run. */
  readonly network: NetnsNetwork | null;
  readonly enabled: ReadonlySet<Nemesis>;
  readonly opening: readonly Nemesis[];
  readonly prng: Prng;
  readonly events: NemesisEvent[];
  readonly stop: Stop;
  /** Disk full and corrupt record; who the members are, and which a fault holds. */
  readonly faults: FaultNemeses;
}

/**
 * A partition lasts this long (ms): 2.5 to 15 election timeouts (10 ticks of 20 ms), so
 * a cut-off leader is replaced; at most the session TTL, so the clients' sessions, which
 * can reach the majority side, need not expire.
 */
const PARTITION_MS: readonly [number, number] = [500, 3_000];
/** A node runs under a faked clock this long (ms) before its normal restart. */
const CLOCK_FAULT_MS: readonly [number, number] = [2_000, 4_000];
/** A wall-clock jump comes this long (ms) after the node serves under libfaketime. */
const CLOCK_JUMP_AFTER_MS: readonly [number, number] = [300, 1_000];
const SERVING_TIMEOUT_MS = 10_000;

/**
 * Every 1–2 s one fault, healed before the next, so at most one node is ever down,
 * frozen, cut off or on a faked clock: kill -9 a node and restart it after 0.5–2 s,
 * SIGSTOP a node (half the time the leader) for 0.5–3 s, SIGSTOP the register process
 * for 1–2.5 s (calls to it time out and are 'info'), partition the network for 0.5–3 s
 * (a seeded shape: see drawPartition), restart a node under a faked clock for 2–4 s,
 * fill a node's disk or corrupt a record of a stopped node (each healed by a restart:
 * see fault-nemeses.ts). Node faults pick among the members no membership change holds.
 * Kills, pauses, partitions and clock faults come twice as often as the rest. Every draw is made whatever
 * happens, so the schedule depends on the seed alone ("the leader" is whoever leads
 * then; a partition or clock fault draws from PRNGs of its own, so a leader-directed
 * shape's extra draws shift nothing else).
 */
async function nemesisLoop(ctx: NemesisContext): Promise<void> {
  const { cluster, enabled, prng, events, stop } = ctx;
  const kinds = (
    [
      'kill',
      'kill',
      'pause',
      'pause',
      'register-pause',
      'partition',
      'partition',
      'clock',
      'clock',
      'clock-beyond',
      'clock-beyond',
      'disk-full',
      'corrupt',
    ] as const
  ).filter((kind) => enabled.has(kind));
  if (kinds.length === 0) return;
  const partitionPrng = prng.fork();
  const clockPrng = prng.fork();
  const faultPrng = prng.fork();
  // client-pause and membership have loops of their own; the others open in the order asked.
  const opening = ctx.opening.flatMap((asked) =>
    kinds.filter((kind) => kind === asked).slice(0, 1),
  );
  for (let round = 0; ; round++) {
    const waitMs = prng.intBetween(1_000, 2_000);
    const drawn = prng.pick(kinds);
    const kind = opening[round] ?? drawn;
    const free = ctx.faults.members.free();
    const randomNode = free.length === 0 ? null : prng.pick(free);
    const targetLeader = prng.chance(0.5);
    // A register freeze outlasts the write timeout at least a little, so writes go 'info'.
    const downMs =
      kind === 'register-pause'
        ? prng.intBetween(WRITE_TIMEOUT_MS, 2_500)
        : kind === 'partition'
          ? prng.intBetween(...PARTITION_MS)
          : kind === 'clock' || kind === 'clock-beyond'
            ? prng.intBetween(...CLOCK_FAULT_MS)
            : prng.intBetween(500, kind === 'kill' ? 2_000 : 3_000);
    await sleepUnless(waitMs, stop);
    if (stop.nemesis) return;
    if (kind === 'register-pause') {
      events.push({ atMs: now(), kind: 'register-pause', target: 'registers' });
      ctx.registers.pause();
      await sleep(downMs);
      ctx.registers.resume();
      events.push({ atMs: now(), kind: 'register-resume', target: 'registers' });
      continue;
    }
    // Only drawn when the namespaces could be made.
    if (kind === 'partition') {
      if (ctx.network !== null)
        await partitionOnce(
          ctx.network,
          ctx.faults.members.ids(),
          cluster,
          partitionPrng,
          downMs,
          events,
        );
      continue;
    }
    // A clock running fast beyond the bound matters on the leader, whose clock ends leases.
    const leader = targetLeader || kind === 'clock-beyond' ? await cluster.leader() : null;
    const node = leader ?? randomNode;
    // None free, a membership change holds the node, or removed it since the draw (the
    // pick is older than the wait above): this round passes.
    if (node !== null)
      await ctx.faults.members.holding(node, () =>
        nodeFault(ctx, kind, node, downMs, { clock: clockPrng, fault: faultPrng }),
      );
  }
}

/** One fault on one node, healed before it returns. */
async function nodeFault(
  ctx: NemesisContext,
  kind: Exclude<Nemesis, 'register-pause' | 'partition' | 'client-pause' | 'membership'>,
  node: string,
  downMs: number,
  prngs: { clock: Prng; fault: Prng },
): Promise<void> {
  const { cluster, events } = ctx;
  const clockPrng = prngs.clock;
  if (kind === 'disk-full' || kind === 'corrupt') {
    await ctx.faults.nodeFault(kind, node, prngs.fault);
  } else if (kind === 'clock' || kind === 'clock-beyond') {
    await clockFaultOnce(
      cluster,
      node,
      planClockFault(
        clockPrng,
        clockFaultTimestampFile(cluster.dir, node),
        kind === 'clock-beyond',
      ),
      clockPrng,
      downMs,
      events,
    );
  } else if (kind === 'kill') {
    events.push({ atMs: now(), kind: 'kill', target: node });
    await cluster.kill(node);
    await sleep(downMs);
    cluster.start(node);
    events.push({ atMs: now(), kind: 'restart', target: node });
    await waitUntilServing(cluster, node, SERVING_TIMEOUT_MS);
  } else {
    events.push({ atMs: now(), kind: 'pause', target: node });
    cluster.pause(node);
    await sleep(downMs);
    cluster.resume(node);
    events.push({ atMs: now(), kind: 'resume', target: node });
  }
}

/**
 * One seeded partition among the members (a spare the membership nemesis has not added
 * has no links worth cutting), held for `ms`, then healed; both recorded with the shape.
 */
async function partitionOnce(
  network: NetnsNetwork,
  members: readonly string[],
  cluster: ProcessCluster,
  prng: Prng,
  ms: number,
  events: NemesisEvent[],
): Promise<void> {
  // Asked every time, so the draws do not depend on whether a leader was found.
  const leader = await cluster.leader();
  const plan = drawPartition(prng, members, leader);
  await network.apply(plan.grudge);
  events.push({ atMs: now(), kind: 'partition', target: 'network', detail: plan.description });
  await sleep(ms);
  await network.heal();
  events.push({ atMs: now(), kind: 'heal', target: 'network', detail: plan.description });
}

/**
 * Restarts one node (kill -9, so the restart is also a crash) under a faked clock, moves
 * its wall clock while it runs if the fault is a jump, and after `ms` restarts it on the
 * real clock. The window between 'clock' and 'clock-restore' is when the node ran faked.
 */
async function clockFaultOnce(
  cluster: ProcessCluster,
  node: string,
  fault: ClockFault,
  prng: Prng,
  ms: number,
  events: NemesisEvent[],
): Promise<void> {
  const jumpAfterMs = prng.intBetween(...CLOCK_JUMP_AFTER_MS);
  const file = fault.env.FAKETIME_TIMESTAMP_FILE;
  if (file !== undefined) setClockOffset(file, '+0');
  events.push({ atMs: now(), kind: 'clock', target: node, detail: fault.detail });
  await cluster.kill(node);
  cluster.start(node, { env: fault.env });
  await waitUntilServing(cluster, node, SERVING_TIMEOUT_MS);
  // The restart cost the node its leadership; a fast clock only cuts leases short on
  // the leader, so hand leadership back to it (best effort, bounded).
  const led = fault.kind === 'rate-beyond' ? await transferLeadership(cluster, node) : null;
  const startedMs = now();
  if (file !== undefined && fault.jumpTo !== null) {
    await sleep(jumpAfterMs);
    setClockOffset(file, fault.jumpTo);
  }
  await sleep(Math.max(0, ms - (now() - startedMs)));
  await cluster.kill(node);
  cluster.start(node);
  // The restore says whether the fast node led, so a reader knows what the fault tested.
  const ledText = led === null ? '' : led ? '; it led' : '; it could not be made leader';
  events.push({
    atMs: now(),
    kind: 'clock-restore',
    target: node,
    detail: `${fault.detail}${ledText}`,
  });
  await waitUntilServing(cluster, node, SERVING_TIMEOUT_MS);
}

/** Whether `to` leads afterwards. */
async function transferLeadership(cluster: ProcessCluster, to: string): Promise<boolean> {
  const leader = await cluster.leader();
  if (leader === to) return true;
  if (leader === null) return false;
  try {
    await cluster.call(leader, 'TransferLeadership', { target_node_id: to }, 3_000, 'Cluster');
  } catch {
    // The fault still runs on a follower: its election timer runs fast, which is harmless.
  }
  return (await cluster.leader()) === to;
}
