import { setTimeout as sleep } from 'node:timers/promises';
import {
  DlmClient,
  DlmClientError,
  LockNotAcquiredError,
  type Session,
  SessionLostError,
} from '../../src/client/index.ts';
import { Prng } from '../../src/util/prng.ts';
import { ProcessCluster } from '../support/process-cluster.ts';
import { checkAll, type Violation } from './checker.ts';
import { FencedRegister, History, type NemesisEvent, now, type Op } from './history.ts';

/**
 * A Jepsen-style run against real `dlm serve` processes: clients take exclusive locks
 * and write to a fenced register under them, while a nemesis kills (-9) and restarts
 * nodes, or freezes them with SIGSTOP. Then every checker runs over the history.
 *
 * The seed fixes the nemesis schedule (which fault, which node unless it is "the
 * leader", how long) and the clients' choices; the OS timing, and so the history, is
 * not reproducible.
 */
export interface JepsenOptions {
  readonly seconds: number;
  readonly seed: number;
  readonly clients: number;
  readonly locks: number;
  /** Called every few seconds while the run goes on. */
  readonly onProgress?: (progress: { elapsedMs: number; ops: number; nemesis: number }) => void;
}

export interface JepsenResult {
  readonly ops: readonly Op[];
  readonly violations: readonly Violation[];
  readonly nemesisEvents: readonly NemesisEvent[];
  /** Overlaps that involve an unanswered acquire: not violations (see checker.ts). */
  readonly indeterminate: number;
  /** performance.now() when the workload began and when holds were closed. */
  readonly startMs: number;
  readonly endMs: number;
  readonly clusterDir: string;
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

/** Windows [from, to) when some node was down (killed) or frozen (stopped). */
export function faultWindows(
  events: readonly NemesisEvent[],
  endMs: number,
): { from: number; to: number; node: string; kind: 'kill' | 'pause' }[] {
  const windows: { from: number; to: number; node: string; kind: 'kill' | 'pause' }[] = [];
  const open = new Map<string, NemesisEvent>();
  for (const event of events) {
    if (event.kind === 'kill' || event.kind === 'pause') open.set(event.node, event);
    else {
      const start = open.get(event.node);
      if (start === undefined) continue;
      open.delete(event.node);
      windows.push({
        from: start.atMs,
        to: event.atMs,
        node: event.node,
        kind: start.kind as 'kill' | 'pause',
      });
    }
  }
  for (const start of open.values()) {
    windows.push({
      from: start.atMs,
      to: endMs,
      node: start.node,
      kind: start.kind as 'kill' | 'pause',
    });
  }
  return windows;
}

export async function runJepsen(options: JepsenOptions): Promise<JepsenResult> {
  const prng = new Prng(options.seed);
  const nemesisPrng = prng.fork();
  const clientPrngs = Array.from({ length: options.clients }, () => prng.fork());
  const locks = Array.from({ length: options.locks }, (_, i) => `jepsen/${i}`);

  const cluster = await ProcessCluster.create(3);
  const history = new History();
  const register = new FencedRegister();
  const nemesisEvents: NemesisEvent[] = [];
  const stop = { clients: false, nemesis: false };
  const dlmClients: DlmClient[] = [];
  let startMs = now();
  let endMs = startMs;
  try {
    cluster.startAll();
    await cluster.waitForLeader(30_000);
    const endpoints = cluster.nodes.map((node) => node.clientAddress);
    startMs = now();

    const clientLoops = clientPrngs.map((clientPrng, index) => {
      const client = new DlmClient({ endpoints, attemptTimeoutMs: 1_000 });
      dlmClients.push(client);
      return clientLoop(`c${index}`, client, clientPrng, locks, history, register, stop);
    });
    const nemesis = nemesisLoop(cluster, nemesisPrng, nemesisEvents, stop);

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

    // Heal: the nemesis ends its current fault, then everything runs; the clients finish
    // the iteration they are in (every call is bounded) and release.
    stop.nemesis = true;
    await nemesis;
    for (const node of cluster.nodes) {
      if (!cluster.isRunning(node.id)) {
        cluster.start(node.id);
        nemesisEvents.push({ atMs: now(), kind: 'restart', node: node.id });
      }
    }
    await cluster.waitForLeader(30_000);
    stop.clients = true;
    await Promise.all(clientLoops);
    endMs = now();
  } finally {
    for (const client of dlmClients) client.close();
    await cluster.stopAll();
  }
  const checked = checkAll(history.ops, endMs);
  const result: JepsenResult = {
    ops: history.ops,
    violations: checked.violations,
    nemesisEvents,
    indeterminate: checked.indeterminate,
    startMs,
    endMs,
    clusterDir: cluster.dir,
  };
  if (checked.violations.length === 0) cluster.remove();
  return result;
}

/** One client: sessions one after another; in each, acquire, write a few times, release. */
async function clientLoop(
  name: string,
  client: DlmClient,
  prng: Prng,
  locks: readonly string[],
  history: History,
  register: FencedRegister,
  stop: { clients: boolean },
): Promise<void> {
  while (!stop.clients) {
    let session: Session;
    try {
      session = await client.openSession({
        ttlMs: SESSION_TTL_MS,
        safetyMarginMs: SAFETY_MARGIN_MS,
        clientName: name,
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
    while (usable && !stop.clients && session.alive) {
      usable = await oneHold(name, session, prng, locks, history, register, acquires);
    }
    // Closing aborts the signal too; that is the end of the session, not a lost lease.
    session.signal.removeEventListener('abort', onLost);
    await session.close().catch(() => {});
  }
}

/** Returns whether the session may be used again (false after an unknown outcome). */
async function oneHold(
  name: string,
  session: Session,
  prng: Prng,
  locks: readonly string[],
  history: History,
  register: FencedRegister,
  acquires: Op[],
): Promise<boolean> {
  const lock = prng.pick(locks);
  const acquireOp = history.invoke(name, 'acquire', lock, { session: session.id });
  acquires.push(acquireOp);
  let token: string;
  let release: () => Promise<void>;
  try {
    const handle = await session.acquire(lock, { waitMs: ACQUIRE_WAIT_MS, owner: name });
    history.complete(acquireOp, 'ok', { token: handle.token });
    token = handle.token;
    release = () => handle.release();
  } catch (error) {
    if (error instanceof LockNotAcquiredError || error instanceof SessionLostError) {
      // Not acquired (the wait ended), or refused before sending: certainly not granted.
      history.complete(acquireOp, 'fail', { error: errorText(error) });
      await sleep(prng.intBetween(0, 50));
      return true;
    }
    // A timeout or a node that went away: the grant may have happened. The session may
    // hold the lock on the cluster without knowing its token: give the session up.
    history.complete(acquireOp, 'info', { error: errorText(error) });
    return false;
  }
  const writes = prng.intBetween(1, 4);
  for (let i = 0; i < writes; i++) {
    if (!session.alive) return false; // Stop at once: the lease may be gone.
    const accepted = register.write(lock, token);
    history.instant(name, 'write', lock, accepted ? 'ok' : 'fail', token);
    await sleep(prng.intBetween(5, 60));
  }
  if (!session.alive) return false;
  const releaseOp = history.invoke(name, 'release', lock, { session: session.id, token });
  try {
    await release();
    history.complete(releaseOp, 'ok');
    return true;
  } catch (error) {
    // Unknown whether it was applied; the hold ended at its invocation either way.
    history.complete(releaseOp, 'info', { error: errorText(error) });
    // The session may still hold the lock: a re-acquire would hand back the same grant.
    return false;
  }
}

function errorText(error: unknown): string {
  if (error instanceof DlmClientError)
    return `${error.errorCode ?? error.status}: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Every 1–2 s one fault, healed before the next, so at most one node is ever down or
 * frozen: kill -9 a node and restart it after 0.5–2 s, or SIGSTOP a node (half the
 * time the leader) for 0.5–3 s, then SIGCONT. Every draw is made whatever happens, so
 * the schedule depends on the seed alone ("the leader" is whoever leads then).
 */
async function nemesisLoop(
  cluster: ProcessCluster,
  prng: Prng,
  events: NemesisEvent[],
  stop: { nemesis: boolean },
): Promise<void> {
  const ids = cluster.nodes.map((node) => node.id);
  for (;;) {
    const waitMs = prng.intBetween(1_000, 2_000);
    const kind = prng.chance(0.5) ? 'kill' : 'pause';
    const randomNode = prng.pick(ids);
    const targetLeader = prng.chance(0.5);
    const downMs = kind === 'kill' ? prng.intBetween(500, 2_000) : prng.intBetween(500, 3_000);
    await sleepUnless(waitMs, stop);
    if (stop.nemesis) return;
    const leader = targetLeader ? await cluster.leader() : null;
    const node = leader ?? randomNode;
    if (kind === 'kill') {
      events.push({ atMs: now(), kind: 'kill', node });
      await cluster.kill(node);
      await sleep(downMs);
      cluster.start(node);
      events.push({ atMs: now(), kind: 'restart', node });
      await waitUntilServing(cluster, node, 10_000);
    } else {
      events.push({ atMs: now(), kind: 'pause', node });
      cluster.pause(node);
      await sleep(downMs);
      cluster.resume(node);
      events.push({ atMs: now(), kind: 'resume', node });
    }
  }
}

async function sleepUnless(ms: number, stop: { nemesis: boolean }): Promise<void> {
  const until = now() + ms;
  while (!stop.nemesis && now() < until) await sleep(Math.min(100, until - now()));
}

/** Waits (bounded) until a restarted node answers, so the next fault does not take two down. */
async function waitUntilServing(
  cluster: ProcessCluster,
  id: string,
  timeoutMs: number,
): Promise<void> {
  const until = now() + timeoutMs;
  while (now() < until) {
    try {
      await cluster.call(id, 'Status', {}, 500, 'Cluster');
      return;
    } catch {
      await sleep(50);
    }
  }
}
