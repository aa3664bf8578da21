import { readFileSync } from 'node:fs';
import type { Transport } from '../src/client/connection.ts';
import { DlmClient, type Session } from '../src/client/index.ts';
import { ProcessCluster } from '../test/support/process-cluster.ts';

/**
 * Unary calls against the Lock.Session stream, on one running 3-node cluster (three
 * `dlm serve` processes): acquire+release pairs through the TypeScript client, one
 * client and 16 clients on distinct locks, each client with its own DlmClient and
 * session; and one client's stale Describes, which the node answers from its own state,
 * so they measure the transport and the API with no Raft work. A "pair" in the output
 * is one operation: an acquire+release, or a Describe. After a warm-up (code is cold for the first ~2,500 pairs), the transports
 * take turns, the order flipping every round, so a neighbour's load on this shared
 * machine falls on both alike; it prints each run, then the median stream/unary ratio
 * of each measure.
 *
 *   node --import tsx scripts/bench-transport.ts [--rounds N] [--seconds S] [--warmup PAIRS]
 *
 * CPU per pair: the three server processes' user+system time (/proc/PID/stat) and this
 * process's (process.cpuUsage), divided by the pairs done in the run. The servers' idle
 * CPU (ticks, heartbeats), measured for a second before each round, is taken out first:
 * at a few dozen pairs/s it would otherwise outweigh the pairs themselves.
 */
const rounds = intArg('--rounds', 3, 1, 100);
const seconds = intArg('--seconds', 4, 1, 600);
const warmupPairs = intArg('--warmup', 3_000, 0, 1_000_000);
const MANY_CLIENTS = 16;
const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux
const IDLE_SAMPLE_MS = 1_000;

interface Run {
  readonly cell: string;
  readonly transport: Transport;
  readonly pairs: number;
  readonly pairsPerSecond: number;
  readonly acquireP50Ms: number;
  readonly acquireP99Ms: number;
  readonly serverCpuMsPerPair: number;
  /** The leader alone: the node that serves the calls (the others only replicate). */
  readonly leaderCpuMsPerPair: number;
  readonly clientCpuMsPerPair: number;
}

function intArg(name: string, fallback: number, min: number, max: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < min || value > max) {
    process.stderr.write(`bench-transport: ${name} must be an integer in ${min}..${max}\n`);
    process.exit(2);
  }
  return value;
}

/** user + system CPU of a process so far, in ms (fields 14 and 15 of /proc/PID/stat). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1_000) / TICKS_PER_SECOND;
}

function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1_000;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** One operation of a client: returns the latency of its first call, in ms. */
type Operation = () => Promise<number>;

/** A try-lock of the client's own lock, then its release. */
function pair(session: Session, lock: string): Operation {
  return async () => {
    const startedMs = performance.now();
    const handle = await session.acquire(lock);
    const acquireMs = performance.now() - startedMs;
    await handle.release();
    return acquireMs;
  };
}

/** A stale Describe: answered by the node from its own state, no Raft, so the API alone. */
function staleRead(client: DlmClient, lock: string): Operation {
  return async () => {
    const startedMs = performance.now();
    await client.describe(lock, { stale: true });
    return performance.now() - startedMs;
  };
}

/** One client's loop until `untilMs`; returns the operations done. */
async function loop(operation: Operation, untilMs: number, latenciesMs: number[]) {
  let done = 0;
  while (performance.now() < untilMs) {
    latenciesMs.push(await operation());
    done++;
  }
  return done;
}

/** The servers' CPU ms per second while no client calls. */
async function idleCpuMsPerSecond(serverPids: readonly number[]): Promise<number[]> {
  const before = serverPids.map(processCpuMs);
  const startedMs = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_SAMPLE_MS));
  const elapsedS = (performance.now() - startedMs) / 1_000;
  return serverPids.map((pid, i) => (processCpuMs(pid) - (before[i] ?? 0)) / elapsedS);
}

async function measure(
  cell: string,
  transport: Transport,
  operations: readonly Operation[],
  serverPids: readonly number[],
  durationS: number,
  idleMsPerSecond: readonly number[],
): Promise<Run> {
  const serverCpuBefore = serverPids.map(processCpuMs);
  const clientCpuBefore = ownCpuMs();
  const latenciesMs: number[] = [];
  const startedMs = performance.now();
  const untilMs = startedMs + durationS * 1_000;
  const counts = await Promise.all(
    operations.map((operation) => loop(operation, untilMs, latenciesMs)),
  );
  const elapsedS = (performance.now() - startedMs) / 1_000;
  const pairs = counts.reduce((sum, count) => sum + count, 0);
  // Each server's CPU in the run, less what it spends idle in as long.
  const busyMs = serverPids.map(
    (pid, i) =>
      processCpuMs(pid) - (serverCpuBefore[i] ?? 0) - (idleMsPerSecond[i] ?? 0) * elapsedS,
  );
  const serverCpuMs = busyMs.reduce((sum, ms) => sum + ms, 0);
  latenciesMs.sort((a, b) => a - b);
  return {
    cell,
    transport,
    pairs,
    pairsPerSecond: pairs / elapsedS,
    acquireP50Ms: percentile(latenciesMs, 50),
    acquireP99Ms: percentile(latenciesMs, 99),
    serverCpuMsPerPair: serverCpuMs / pairs,
    leaderCpuMsPerPair: (busyMs[0] ?? Number.NaN) / pairs,
    clientCpuMsPerPair: (ownCpuMs() - clientCpuBefore) / pairs,
  };
}

function print(run: Run): void {
  process.stdout.write(
    `${run.cell.padEnd(22)} ${run.transport.padEnd(6)} ${String(run.pairs).padStart(6)} pairs ` +
      `${run.pairsPerSecond.toFixed(0).padStart(5)}/s  acquire p50 ${run.acquireP50Ms.toFixed(2)} ms ` +
      `p99 ${run.acquireP99Ms.toFixed(2)} ms  CPU/pair: servers ${run.serverCpuMsPerPair.toFixed(3)} ms ` +
      `(leader ${run.leaderCpuMsPerPair.toFixed(3)}), ` +
      `client ${run.clientCpuMsPerPair.toFixed(3)} ms\n`,
  );
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** Median over rounds of stream/unary, each ratio from the two runs of one round. */
function summarize(runs: readonly Run[], cell: string): void {
  const ofCell = runs.filter((run) => run.cell === cell);
  const stream = ofCell.filter((run) => run.transport === 'stream');
  const unary = ofCell.filter((run) => run.transport === 'unary');
  const ratio = (key: keyof Run) =>
    median(stream.map((run, i) => Number(run[key]) / Number(unary[i]?.[key] ?? Number.NaN)));
  process.stdout.write(
    `${cell}: stream/unary over ${stream.length} rounds (median): pairs/s ×${ratio('pairsPerSecond').toFixed(2)}, ` +
      `acquire p50 ×${ratio('acquireP50Ms').toFixed(2)}, server CPU/pair ×${ratio('serverCpuMsPerPair').toFixed(2)} ` +
      `(leader ×${ratio('leaderCpuMsPerPair').toFixed(2)}), ` +
      `client CPU/pair ×${ratio('clientCpuMsPerPair').toFixed(2)}\n`,
  );
}

const cluster = await ProcessCluster.create(3, { raft: { tickIntervalMs: 50 } });
const clients: DlmClient[] = [];
try {
  cluster.startAll();
  const leader = await cluster.waitForLeader(20_000);
  // The leader first: it serves every call (the client is pointed at it below).
  const byLeaderFirst = [...cluster.nodes].sort(
    (a, b) => Number(b.id === leader) - Number(a.id === leader),
  );
  const serverPids = byLeaderFirst.map((node) => {
    const pid = cluster.pid(node.id);
    if (pid === undefined) throw new Error(`${node.id} has no process`);
    return pid;
  });
  // Through the leader, as a client that has learnt where it is.
  const endpoints = byLeaderFirst.map((node) => node.clientAddress);
  const clientsOf = (transport: Transport): DlmClient[] =>
    Array.from({ length: MANY_CLIENTS }, () => {
      const client = new DlmClient({ endpoints, transport });
      clients.push(client);
      return client;
    });
  const clientsBy: Record<Transport, DlmClient[]> = {
    stream: clientsOf('stream'),
    unary: clientsOf('unary'),
  };
  const sessionsOf = (transport: Transport): Promise<Session[]> =>
    Promise.all(
      clientsBy[transport].map((client) =>
        client.openSession({ ttlMs: 60_000, clientName: `bench-${transport}` }),
      ),
    );
  const sessions: Record<Transport, Session[]> = {
    stream: await sessionsOf('stream'),
    unary: await sessionsOf('unary'),
  };
  process.stdout.write(`warming up: ${warmupPairs} pairs per transport\n`);
  for (const transport of ['stream', 'unary'] as const) {
    // Spread over the clients, so the warm-up takes less of a loaded machine's time.
    const perClient = Math.ceil(warmupPairs / MANY_CLIENTS);
    await Promise.all(
      sessions[transport].map(async (session, i) => {
        for (let pair = 0; pair < perClient; pair++) {
          await (await session.acquire(`bench/warmup/${i}`)).release();
        }
      }),
    );
  }
  const runs: Run[] = [];
  const cells: { cell: string; operations: (transport: Transport) => Operation[] }[] = [
    {
      cell: '1 client',
      operations: (transport) =>
        sessions[transport].slice(0, 1).map((s) => pair(s, `bench/${transport}/0`)),
    },
    {
      cell: `${MANY_CLIENTS} clients, distinct locks`,
      operations: (transport) =>
        sessions[transport].map((session, i) => pair(session, `bench/${transport}/${i}`)),
    },
    {
      cell: '1 client, stale Describe',
      operations: (transport) =>
        clientsBy[transport].slice(0, 1).map((client) => staleRead(client, 'bench/read')),
    },
  ];
  for (let round = 0; round < rounds; round++) {
    const order: Transport[] = round % 2 === 0 ? ['stream', 'unary'] : ['unary', 'stream'];
    const idleMsPerSecond = await idleCpuMsPerSecond(serverPids);
    const idleTotal = idleMsPerSecond.reduce((sum, ms) => sum + ms, 0);
    process.stdout.write(`round ${round + 1}: servers idle at ${idleTotal.toFixed(1)} CPU ms/s\n`);
    for (const { cell, operations } of cells) {
      for (const transport of order) {
        const run = await measure(
          cell,
          transport,
          operations(transport),
          serverPids,
          seconds,
          idleMsPerSecond,
        );
        print(run);
        runs.push(run);
      }
    }
  }
  for (const { cell } of cells) summarize(runs, cell);
} finally {
  for (const client of clients) client.close();
  await cluster.stopAll();
  cluster.remove();
}
