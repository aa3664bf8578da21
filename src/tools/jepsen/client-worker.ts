import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Prng } from '../../util/prng.ts';
import type { Violation } from './checker.ts';
import { faultVerdict } from './fault-verdict.ts';
import { type History, type NemesisEvent, now, type Op, type Outcome } from './history.ts';
import { PAUSED_CHILD_SPAWN } from './pausable-spawn.ts';
import { REGISTER_MODES, type RegisterMode } from './register.ts';
import type { CheckerVerdict } from './summary.ts';
import { type NemesisStop, sleepUnless } from './waits.ts';

/**
 * The client-pause nemesis (issue 13, point 6): a Jepsen client in a process of its own
 * (client-worker-main.ts) is stopped with SIGSTOP while it holds a lock, past its
 * lease, and continued with SIGCONT once another client has written under a later
 * token. The write it then makes is a stale holder's: the fenced register must refuse
 * it, and the register that ignores tokens (the negative control) takes it.
 *
 * The worker records its calls in a history of its own (session calls and request ids
 * too) and mirrors each op over IPC whenever it changes, timed on the wall clock
 * (performance.timeOrigin plus its monotonic clock), which this process maps onto its
 * own monotonic clock the same way: two processes on one machine agree on it to well
 * under a millisecond, while the run's checks work in hundreds. Its write ops are
 * created here, when it is let go, so that their ids (which the registers record) are
 * the history's own.
 */

export interface WorkerConfig {
  readonly name: string;
  readonly endpoints: readonly string[];
  readonly registerPort: number;
  readonly seed: number;
  readonly locks: readonly string[];
  readonly ttlMs: number;
  readonly safetyMarginMs: number;
  readonly acquireWaitMs: number;
  readonly callTimeoutMs: number;
  readonly writeTimeoutMs: number;
}

/** What the worker says; times are wall-clock ms (see above). */
export type WorkerToRun =
  | { readonly type: 'ready' }
  /** One op of its history as it is now; its id is the worker's own. */
  | { readonly type: 'op'; readonly op: Op }
  /** A write the run created (see WriteGo) was answered. */
  | {
      readonly type: 'written';
      readonly opId: number;
      readonly outcome: Outcome;
      readonly error?: string;
      readonly atMs: number;
    }
  | {
      readonly type: 'may-write';
      readonly session: string;
      readonly lock: string;
      readonly token: string;
      /** When its session's signal fires unless a keepalive is confirmed first. */
      readonly safeDeadlineAtMs: number;
    };

/** Go on and write: `opIds` are the history's ids of the writes, one per register. */
export interface WriteGo {
  readonly type: 'write';
  readonly paused: boolean;
  readonly opIds: Readonly<Record<RegisterMode, number>>;
}

export type RunToWorker = WriteGo | { readonly type: 'stop' };

const WORKER_PATH = fileURLToPath(new URL('./client-worker-main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;
/** A pause outlasts the lease by this much, so another client can take the lock. */
const PAUSE_PAST_TTL_MS: readonly [number, number] = [1_500, 2_500];
/** A pause lasts at most this long, waiting for another client to take its lock over. */
const PAUSE_MAX_MS = 10_000;
/** A requested pause the worker did not take (it held no lock) is dropped after this. */
const PAUSE_TAKE_TIMEOUT_MS = 10_000;

/** One pause, and the stale write the worker made after it. */
interface PauseRecord {
  readonly lock: string;
  readonly token: string;
  /** Another client wrote to the fenced register under a later token while it was stopped. */
  overtaken: boolean;
  /** The worker's fenced write right after it was continued. */
  write: Op | null;
}

export class ClientWorker {
  private readonly pauses: PauseRecord[] = [];
  /** The worker's ops by its own id, as mirrored here. */
  private readonly mirrored = new Map<number, Op>();
  /** The writes created here, by the history's id. */
  private readonly writes = new Map<number, Op>();
  private readonly acquiresBySession = new Map<string, Op[]>();
  /** The pause asked for (its length), taken at the worker's next write. */
  private requestedMs: number | null = null;
  private pausing = false;
  private exitedEarly: string | null = null;
  private stopping = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly name: string,
    private readonly history: History,
    private readonly events: NemesisEvent[],
    private readonly stop: NemesisStop,
  ) {
    child.on('message', (message: WorkerToRun) => this.receive(message));
    child.once('exit', (code, signal) => {
      if (!this.stopping) this.exitedEarly = `exited with code ${code} (${signal ?? 'no signal'})`;
    });
    // A send racing the worker's exit fails here, not as an uncaught 'error' event.
    child.on('error', (error) => {
      if (!this.stopping) this.exitedEarly ??= `failed: ${error.message}`;
    });
  }

  /** Starts the worker and waits (bounded) until it is ready; its output goes to `logPath`. */
  static async start(options: {
    readonly config: WorkerConfig;
    readonly history: History;
    readonly events: NemesisEvent[];
    readonly stop: NemesisStop;
    readonly logPath: string;
  }): Promise<ClientWorker> {
    const log = openSync(options.logPath, 'a');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', WORKER_PATH, JSON.stringify(options.config)],
      // A session of its own (see PAUSED_CHILD_SPAWN); it exits when the IPC channel closes.
      { cwd: ROOT, stdio: ['ignore', log, log, 'ipc'], ...PAUSED_CHILD_SPAWN },
    );
    closeSync(log); // The child holds its own copy.
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(`client worker not ready in ${START_TIMEOUT_MS} ms; see ${options.logPath}`),
        );
      }, START_TIMEOUT_MS);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const worker = new ClientWorker(
      child,
      options.config.name,
      options.history,
      options.events,
      options.stop,
    );
    await ready;
    return worker;
  }

  /**
   * Every 2–4 s (the first 1–2 s in), a pause of the TTL plus 1.5–2.5 s is asked of the
   * worker, taken at its next write; the next is asked once that one is over (or was
   * not taken within 10 s).
   */
  async pauseLoop(prng: Prng, ttlMs: number): Promise<void> {
    let waitMs = prng.intBetween(1_000, 2_000);
    for (;;) {
      const pauseMs = ttlMs + prng.intBetween(...PAUSE_PAST_TTL_MS);
      await sleepUnless(waitMs, this.stop);
      if (this.stop.nemesis) break;
      this.requestedMs = pauseMs;
      const takeBy = now() + PAUSE_TAKE_TIMEOUT_MS;
      while (!this.stop.nemesis && this.requestedMs !== null && now() < takeBy) await sleep(50);
      this.requestedMs = null;
      // A pause under way ends by itself, and early once the run heals.
      while (this.pausing) await sleep(50);
      waitMs = prng.intBetween(2_000, 4_000);
    }
  }

  /** Asks the worker to finish its session and exit; kills it if it does not in time. */
  async close(): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGCONT'); // In case a pause is cut short by an error.
    if (this.child.connected) this.child.send({ type: 'stop' } satisfies RunToWorker);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private receive(message: WorkerToRun): void {
    switch (message.type) {
      case 'ready':
        return;
      case 'op':
        this.mirror(message.op);
        return;
      case 'written': {
        const op = this.writes.get(message.opId);
        const fields = message.error === undefined ? {} : { error: message.error };
        if (op !== undefined)
          this.history.complete(op, message.outcome, fields, runMs(message.atMs));
        return;
      }
      case 'may-write':
        void this.letWrite(message);
        return;
    }
  }

  /**
   * Brings the history's copy of a worker op up to date: created at its first report,
   * then every field the worker changed. A hold's end only ever moves earlier: the one
   * set here at a pause (the safe deadline) beats the late one the worker reports once
   * its frozen signal fires.
   */
  private mirror(remote: Op): void {
    const { id, client: _client, kind, lock, invokeMs, completeMs, lostAtMs, ...fields } = remote;
    let op = this.mirrored.get(id);
    if (op === undefined) {
      op = this.history.invoke(this.name, kind, lock, {}, runMs(invokeMs));
      this.mirrored.set(id, op);
    }
    Object.assign(op, fields, { completeMs: completeMs === null ? null : runMs(completeMs) });
    if (lostAtMs !== undefined)
      op.lostAtMs = Math.min(op.lostAtMs ?? Number.POSITIVE_INFINITY, runMs(lostAtMs));
    this.track(op);
  }

  /** The acquires of each session, whose holds a pause ends. */
  private track(op: Op): void {
    if (op.kind !== 'acquire' || op.session === undefined) return;
    const acquires = this.acquiresBySession.get(op.session) ?? [];
    if (!acquires.includes(op)) acquires.push(op);
    this.acquiresBySession.set(op.session, acquires);
  }

  /** Pauses the worker first if a pause was asked, then lets it write. */
  private async letWrite(message: Extract<WorkerToRun, { type: 'may-write' }>): Promise<void> {
    const pauseMs = this.requestedMs;
    const pause = pauseMs === null ? null : await this.pauseNow(message, pauseMs);
    const opIds = {} as Record<RegisterMode, number>;
    for (const register of REGISTER_MODES) {
      const op = this.history.invoke(this.name, 'write', message.lock, {
        session: message.session,
        token: message.token,
        register,
      });
      this.writes.set(op.id, op);
      opIds[register] = op.id;
      if (pause !== null && register === 'fenced') pause.write = op;
    }
    if (this.child.connected) {
      this.child.send({ type: 'write', paused: pause !== null, opIds } satisfies RunToWorker);
    }
  }

  /**
   * SIGSTOP, then SIGCONT once the pause has lasted `pauseMs` and another client has
   * written to the lock under a later token (so the write that follows is stale), or
   * after PAUSE_MAX_MS, or when the run heals.
   */
  private async pauseNow(
    message: Extract<WorkerToRun, { type: 'may-write' }>,
    pauseMs: number,
  ): Promise<PauseRecord> {
    this.requestedMs = null;
    this.pausing = true;
    const { lock, token } = message;
    const record: PauseRecord = { lock, token, overtaken: false, write: null };
    this.child.kill('SIGSTOP');
    const startMs = now();
    this.events.push({ atMs: startMs, kind: 'client-pause', target: this.name });
    // Its holds end at the safe deadline: its signal, frozen with it, would fire late.
    for (const op of this.acquiresBySession.get(message.session) ?? [])
      op.lostAtMs ??= runMs(message.safeDeadlineAtMs);
    for (;;) {
      const elapsedMs = now() - startMs;
      record.overtaken = overtaken(this.history.ops, lock, token, startMs);
      if (this.stop.nemesis || elapsedMs >= PAUSE_MAX_MS) break;
      if (elapsedMs >= pauseMs && record.overtaken) break;
      await sleep(100);
    }
    // Timed before the SIGCONT, as the pause was after the SIGSTOP: the window recorded
    // lies within the stop, so no call the worker makes after it falls inside.
    const resumedAtMs = now();
    this.child.kill('SIGCONT');
    this.events.push({ atMs: resumedAtMs, kind: 'client-resume', target: this.name });
    this.pauses.push(record);
    this.pausing = false;
    return record;
  }

  violations(): Violation[] {
    const found: Violation[] = [];
    const problem = (message: string, ops: number[] = []): void => {
      found.push({ check: 'client-pause', message: `${this.name}: ${message}`, ops });
    };
    if (this.exitedEarly !== null)
      problem(`the client worker ${this.exitedEarly} before the run ended`);
    for (const pause of this.pauses) {
      const write = pause.write;
      if (pause.overtaken && write?.outcome === 'ok')
        problem(
          `its stale write (token ${pause.token}) after a pause was accepted by the fenced register`,
          [write.id],
        );
    }
    return found;
  }

  verdict(): CheckerVerdict {
    const overtakenPauses = this.pauses.filter((p) => p.overtaken);
    const refused = overtakenPauses.filter((p) => p.write?.outcome === 'fail').length;
    return faultVerdict({
      name: 'client pause: a client process stopped past its lease wrote stale, and the fenced register refused it',
      check: 'client-pause',
      violations: this.violations(),
      stats: {
        pauses: this.pauses.length,
        overtaken: overtakenPauses.length,
        staleWritesRefused: refused,
        staleWritesUnanswered: overtakenPauses.filter((p) => p.write?.outcome === 'info').length,
      },
      unknownBecause:
        overtakenPauses.length === 0
          ? `no pause was overtaken by another client (${this.pauses.length} pauses)`
          : null,
      note: `${refused} of ${overtakenPauses.length} stale writes after a pause refused by the fenced register`,
    });
  }
}

/** Another client wrote to the fenced register, under a later token, since `sinceMs`. */
function overtaken(ops: readonly Op[], lock: string, token: string, sinceMs: number): boolean {
  return ops.some(
    (op) =>
      op.kind === 'write' &&
      op.lock === lock &&
      op.register === 'fenced' &&
      op.outcome === 'ok' &&
      op.invokeMs >= sinceMs &&
      BigInt(op.token as string) > BigInt(token),
  );
}

/** A wall-clock time from the worker, on this process's performance.now() clock. */
function runMs(epochMs: number): number {
  return epochMs - performance.timeOrigin;
}
