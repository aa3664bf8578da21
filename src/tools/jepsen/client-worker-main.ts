import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DlmClient,
  LockNotAcquiredError,
  type Session,
  SessionLostError,
} from '../../client/index.ts';
import { Prng } from '../../util/prng.ts';
import type { RunToWorker, WorkerConfig, WorkerToRun, WriteGo } from './client-worker.ts';
import { errorText, type Outcome } from './history.ts';
import { REGISTER_MODES, RegisterClient, RegisterConnection } from './register.ts';

/**
 * A Jepsen client in a process of its own, so that the client-pause nemesis can stop it
 * with SIGSTOP as a GC pause or swap would: its timers, keepalives and sockets all
 * freeze. Started by client-worker.ts with its config as the one argument:
 *
 *   node --import tsx src/tools/jepsen/client-worker-main.ts '{"name":"w0",…}'
 *
 * It runs sessions one after another; in each it acquires a lock, writes to both
 * registers under its token a few times, and releases. Before each write, with its
 * lease checked, it asks the run whether to go on: that is where the nemesis stops it,
 * so that the write that follows is a stale holder's. It reports every call as an op
 * over the IPC channel, timed on the wall clock it shares with the run, and stops when
 * told, after the session it is in.
 */
const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
const prng = new Prng(config.seed);
const connection = new RegisterConnection(config.registerPort);
const registers = REGISTER_MODES.map((mode) => new RegisterClient(connection, mode));
const client = new DlmClient({ endpoints: config.endpoints, attemptTimeoutMs: 1_000 });
let stopping = false;
let nextRef = 0;
/** Takes the answer to the pending 'may-write', once the run gives it. */
let proceed: ((answer: WriteGo) => void) | null = null;

process.on('message', (message: RunToWorker) => {
  if (message.type === 'stop') stopping = true;
  if (message.type === 'write') {
    proceed?.(message);
    proceed = null;
  }
});
// The run going away (the channel closed) stops this worker too.
process.on('disconnect', () => process.exit(0));

function send(message: WorkerToRun): void {
  process.send?.(message);
}

function epochMs(monotonicMs = performance.now()): number {
  return performance.timeOrigin + monotonicMs;
}

/** Reports an acquire or release as invoked; its ref names it when it completes. */
function invoke(kind: 'acquire' | 'release', lock: string, fields: Record<string, string>): string {
  const ref = `w${nextRef++}`;
  send({ type: 'invoke', ref, kind, lock, fields, atMs: epochMs() });
  return ref;
}

function complete(ref: string, outcome: Outcome, fields: { token?: string; error?: string } = {}) {
  send({ type: 'complete', ref, outcome, fields, atMs: epochMs() });
}

async function main(): Promise<void> {
  send({ type: 'ready' });
  while (!stopping) {
    let session: Session;
    try {
      session = await client.openSession({
        ttlMs: config.ttlMs,
        safetyMarginMs: config.safetyMarginMs,
        clientName: config.name,
        callTimeoutMs: config.callTimeoutMs,
      });
    } catch {
      await sleep(100);
      continue;
    }
    const lost = (): void => send({ type: 'lost', session: session.id, atMs: epochMs() });
    session.signal.addEventListener('abort', lost, { once: true });
    while (!stopping && session.alive && (await oneHold(session))) {}
    // Closing aborts the signal too; the holds ended here, whatever the reason.
    lost();
    session.signal.removeEventListener('abort', lost);
    await session.close().catch(() => {});
  }
  client.close();
  connection.close();
  process.exit(0);
}

/** One acquire, writes, release; false when the session is not to be used again. */
async function oneHold(session: Session): Promise<boolean> {
  const lock = prng.pick(config.locks);
  const owner = `${config.name}#${nextRef}`;
  const acquire = invoke('acquire', lock, { session: session.id, owner });
  let handle: Awaited<ReturnType<Session['acquire']>>;
  try {
    handle = await session.acquire(lock, { waitMs: config.acquireWaitMs, owner });
  } catch (error) {
    const refused = error instanceof LockNotAcquiredError || error instanceof SessionLostError;
    complete(acquire, refused ? 'fail' : 'info', { error: errorText(error) });
    return refused;
  }
  complete(acquire, 'ok', { token: handle.token });
  for (let i = prng.intBetween(1, 3); i > 0; i--) {
    if (!session.alive) return false;
    const go = await mayWrite(session, lock, handle.token);
    await Promise.all(
      registers.map((register) =>
        write(register, go.opIds[register.mode], session, lock, handle.token),
      ),
    );
    if (go.paused) return false; // Its lease lapsed while it was stopped.
    await sleep(prng.intBetween(5, 60));
  }
  if (!session.alive) return false;
  const release = invoke('release', lock, { session: session.id, token: handle.token });
  try {
    await handle.release();
    complete(release, 'ok');
    return true;
  } catch (error) {
    complete(release, 'info', { error: errorText(error) });
    return false;
  }
}

/**
 * Asks the run whether to write, telling it the lease's safe deadline: if it stops this
 * process now, that is when the hold ended (the signal, frozen too, fires late). The
 * run answers once it has let the process go on, with the history's ids of the writes
 * to make (the registers' record names them).
 */
function mayWrite(session: Session, lock: string, token: string): Promise<WriteGo> {
  const answered = new Promise<WriteGo>((resolve) => {
    proceed = resolve;
  });
  const safeDeadlineAtMs = epochMs(session.safeDeadlineMs);
  send({ type: 'may-write', session: session.id, lock, token, safeDeadlineAtMs });
  return answered;
}

async function write(
  register: RegisterClient,
  opId: number,
  session: Session,
  lock: string,
  token: string,
): Promise<void> {
  const answer = await register.write(
    { lock, token, client: config.name, session: session.id, writeId: String(opId) },
    config.writeTimeoutMs,
  );
  const ref = `op${opId}`;
  if (answer.outcome === 'info') complete(ref, 'info', { error: answer.error });
  else complete(ref, answer.outcome);
}

await main();
