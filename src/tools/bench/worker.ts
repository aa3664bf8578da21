import { ErrorTally } from './bench-errors.ts';
import { type BenchSession, openBenchSession } from './bench-session.ts';
import type { ClientAssignment } from './cells.ts';
import type { FromWorker, ToWorker } from './protocol.ts';
import { epochNowMs, type PairRecord } from './records.ts';
import { scaleClients } from './scale-worker.ts';

/**
 * A bench worker process: runs some of a cell's clients on command of the coordinator
 * (bench.ts), which forks it with an IPC channel. It exits when that channel closes,
 * so it never outlives the coordinator.
 */
const PROGRESS_INTERVAL_MS = 1_000;
/** After a failed call, a client pauses this long so a broken cluster is not hammered. */
const ERROR_PAUSE_MS = 20;
/** A client whose acquires failed this many times in a row stops (its session is likely lost). */
const ACQUIRE_FAILURES_IN_A_ROW_MAX = 50;

interface Client {
  readonly assignment: ClientAssignment;
  readonly session: BenchSession;
}

let clients: Client[] = [];

function send(message: FromWorker): void {
  process.send?.(message);
}

async function open(message: Extract<ToWorker, { kind: 'open' }>): Promise<void> {
  const opened = await Promise.allSettled(
    message.clients.map(async (assignment) => ({
      assignment,
      session: await openBenchSession({
        system: message.system,
        endpoints: message.endpoints,
        ttlMs: message.sessionTtlMs,
        dlmClient: message.dlmClient,
        clientName: `bench-${assignment.clientIndex}`,
      }),
    })),
  );
  clients = opened.flatMap((each) => (each.status === 'fulfilled' ? [each.value] : []));
  const failure = opened.find((each) => each.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}

async function run(message: Extract<ToWorker, { kind: 'run' }>): Promise<void> {
  const records: PairRecord[] = [];
  const errors = new ErrorTally();
  const cpuStart = process.cpuUsage();
  const loopStart = performance.eventLoopUtilization();
  const progress = setInterval(
    () => send({ kind: 'progress', pairs: records.length }),
    PROGRESS_INTERVAL_MS,
  );
  try {
    await Promise.all(clients.map((client) => loop(client, message, records, errors)));
  } finally {
    clearInterval(progress);
  }
  const cpu = process.cpuUsage(cpuStart);
  send({
    kind: 'ran',
    records,
    cpuMs: (cpu.user + cpu.system) / 1000,
    // A worker given no client (fewer clients than workers) ran for no time at all,
    // which eventLoopUtilization reports as fully busy.
    eventLoopBusy:
      clients.length === 0 ? 0 : performance.eventLoopUtilization(loopStart).utilization,
    errors: errors.snapshot(),
  });
}

/** Acquire, release, again, until the time or the pair budget is spent. */
async function loop(
  client: Client,
  run: Extract<ToWorker, { kind: 'run' }>,
  records: PairRecord[],
  errors: ErrorTally,
): Promise<void> {
  const { clientIndex, lock } = client.assignment;
  let failuresInARow = 0;
  while (epochNowMs() < run.untilMs && records.length < run.pairsMax) {
    if (failuresInARow >= ACQUIRE_FAILURES_IN_A_ROW_MAX) {
      errors.note(
        'client',
        new Error(`client ${clientIndex} stopped after ${failuresInARow} failed acquires in a row`),
      );
      return;
    }
    const acquireSentMs = epochNowMs();
    let grant: Awaited<ReturnType<BenchSession['acquire']>>;
    try {
      grant = await client.session.acquire(lock, run.waitMs);
    } catch (error) {
      errors.note('acquire', error);
      failuresInARow++;
      await new Promise((resolve) => setTimeout(resolve, ERROR_PAUSE_MS));
      continue;
    }
    const grantedMs = epochNowMs();
    failuresInARow = 0;
    const releaseSentMs = epochNowMs();
    try {
      await grant.release();
    } catch (error) {
      // The hold still ended, for the checks, when the release was sent.
      errors.note('release', error);
    }
    const releasedMs = epochNowMs();
    records.push({
      clientIndex,
      lock,
      token: grant.token,
      acquireSentMs,
      grantedMs,
      releaseSentMs,
      releasedMs,
    });
  }
}

async function close(): Promise<void> {
  const closing = clients;
  clients = [];
  const results = await Promise.allSettled(closing.map((client) => client.session.close()));
  const failure = results.find((each) => each.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}

async function handle(message: ToWorker): Promise<void> {
  try {
    switch (message.kind) {
      case 'open':
        await open(message);
        send({ kind: 'opened' });
        return;
      case 'run':
        await run(message);
        return;
      case 'close':
        await close();
        send({ kind: 'closed' });
        return;
      case 'scaleOpen':
        send({ kind: 'scaleOpened', ...(await scaleClients.open(message)) });
        return;
      case 'scaleFill': {
        const onProgress = (pairs: number) => send({ kind: 'progress', pairs });
        send({ kind: 'scaleFilled', ...(await scaleClients.fill(message, onProgress)) });
        return;
      }
      case 'scaleStats':
        send({ kind: 'scaleStats', stats: scaleClients.stats(message.resetLatency) });
        return;
      case 'scaleClose':
        send({ kind: 'scaleClosed', errors: await scaleClients.close(message.concurrency) });
        return;
    }
  } catch (error) {
    send({
      kind: 'failed',
      message: `${message.kind}: ${error instanceof Error ? error.message : String(error)}`,
    });
  }
}

process.on('message', (message: ToWorker) => void handle(message));
process.on('disconnect', () => process.exit(0));
// A terminal's Ctrl-C reaches the whole process group: the coordinator decides when
// workers stop (by disconnecting them), so that sessions are closed in order.
process.on('SIGINT', () => {});
