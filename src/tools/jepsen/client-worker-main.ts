import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DlmClient,
  LockNotAcquiredError,
  type Session,
  SessionLostError,
} from '../../client/index.ts';
import { Prng } from '../../util/prng.ts';
import { CallRecorder } from './call-recorder.ts';
import type { RunToWorker, WorkerConfig, WorkerToRun, WriteGo } from './client-worker.ts';
import { errorText, grantEnded, History, type Op, type OpKind, type Outcome } from './history.ts';
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
 * so that the write that follows is a stale holder's. It records its calls as the run's
 * clients do (its session calls and request ids too, through a CallRecorder) in a
 * history of its own, which it mirrors to the run over the IPC channel, op by op as
 * each changes, timed on the wall clock the two processes share. It stops when told,
 * after the session it is in.
 */
const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;

/** A history whose every op is sent to the run after each change (see ClientWorker). */
class MirroredHistory extends History {
  override invoke(
    client: string,
    kind: OpKind,
    lock: string,
    fields: Partial<Op> = {},
    invokeMs = performance.now(),
  ): Op {
    const op = super.invoke(client, kind, lock, fields, invokeMs);
    // After the caller's own additions (an acquire's owner tag, say).
    queueMicrotask(() => mirror(op));
    return op;
  }

  override complete(
    op: Op,
    outcome: Outcome,
    fields: Partial<Pick<Op, 'token' | 'error'>> = {},
    completeMs = performance.now(),
  ): void {
    super.complete(op, outcome, fields, completeMs);
    queueMicrotask(() => mirror(op));
  }
}

const prng = new Prng(config.seed);
const history = new MirroredHistory();
const recorder = new CallRecorder(history, config.name);
const connection = new RegisterConnection(config.registerPort);
const registers = REGISTER_MODES.map((mode) => new RegisterClient(connection, mode));
const client = new DlmClient({
  endpoints: config.endpoints,
  attemptTimeoutMs: 1_000,
  onCall: recorder.observer,
});
let stopping = false;
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

function epochMs(monotonicMs: number): number {
  return performance.timeOrigin + monotonicMs;
}

/** The op as it is now, its times on the wall clock. */
function mirror(op: Op): void {
  const { invokeMs, completeMs, lostAtMs } = op;
  send({
    type: 'op',
    op: {
      ...op,
      invokeMs: epochMs(invokeMs),
      completeMs: completeMs === null ? null : epochMs(completeMs),
      ...(lostAtMs === undefined ? {} : { lostAtMs: epochMs(lostAtMs) }),
    },
  });
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
    const acquires: Op[] = [];
    const lost = (): void => {
      const at = performance.now();
      for (const op of acquires) {
        op.lostAtMs ??= at;
        mirror(op);
      }
    };
    session.signal.addEventListener('abort', lost, { once: true });
    while (!stopping && session.alive && (await oneHold(session, acquires))) {}
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
async function oneHold(session: Session, acquires: Op[]): Promise<boolean> {
  const lock = prng.pick(config.locks);
  const acquire = history.invoke(config.name, 'acquire', lock, { session: session.id });
  // A tag unique in the run (client names are): the recorder and the log find it by it.
  const owner = `${config.name}#${acquire.id}`;
  acquire.owner = owner;
  acquires.push(acquire);
  let handle: Awaited<ReturnType<Session['acquire']>>;
  try {
    handle = await recorder.during(acquire, () =>
      session.acquire(lock, { waitMs: config.acquireWaitMs, owner }),
    );
  } catch (error) {
    // A grant that ended before the answer holds nothing now either (history.ts grantEnded).
    const refused =
      error instanceof LockNotAcquiredError ||
      error instanceof SessionLostError ||
      grantEnded(error);
    history.complete(acquire, refused ? 'fail' : 'info', { error: errorText(error) });
    return refused;
  }
  history.complete(acquire, 'ok', { token: handle.token });
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
  const fields = { session: session.id, token: handle.token };
  const release = history.invoke(config.name, 'release', lock, fields);
  try {
    await recorder.during(release, () => handle.release());
    history.complete(release, 'ok');
    return true;
  } catch (error) {
    history.complete(release, 'info', { error: errorText(error) });
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
  const atMs = epochMs(performance.now());
  if (answer.outcome === 'info')
    send({ type: 'written', opId, outcome: 'info', error: answer.error, atMs });
  else send({ type: 'written', opId, outcome: answer.outcome, atMs });
}

await main();
