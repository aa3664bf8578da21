import type { Transport } from '../src/client/connection.ts';
import { DlmClient } from '../src/client/index.ts';
import { ApiCluster } from '../test/api/harness.ts';

/**
 * CPU per call of the transport alone: a 3-node cluster in this process (in-memory
 * network, real gRPC API servers) and one client calling stale Describes at the leader,
 * which the node answers from its own state with no Raft work. One process holds both
 * ends, so its CPU per call is client + server; the cluster's idle CPU (ticks,
 * heartbeats), sampled for a second before each round, is taken out. After a warm-up, unary and stream take
 * turns, the order flipping every round; prints each run and the median stream/unary.
 *
 *   node --import tsx scripts/bench-transport-calls.ts [--rounds N] [--calls N]
 */
const rounds = intArg('--rounds', 6);
const calls = intArg('--calls', 2_000);
const WARMUP_CALLS = 3_000;

function intArg(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1 || value > 1_000_000) {
    process.stderr.write(`bench-transport-calls: ${name} must be an integer in 1..1000000\n`);
    process.exit(2);
  }
  return value;
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1_000;
}

/** CPU ms per wall-clock second while nothing calls. */
async function idleCpuMsPerSecond(): Promise<number> {
  const cpuBefore = cpuMs();
  const startedMs = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return (cpuMs() - cpuBefore) / ((performance.now() - startedMs) / 1_000);
}

async function run(client: DlmClient, count: number, idleMsPerSecond = 0): Promise<number> {
  const cpuBefore = cpuMs();
  const startedMs = performance.now();
  for (let i = 0; i < count; i++) await client.describe('bench/read', { stale: true });
  const idleMs = (idleMsPerSecond * (performance.now() - startedMs)) / 1_000;
  return (cpuMs() - cpuBefore - idleMs) / count;
}

const cluster = await ApiCluster.start();
const clients: DlmClient[] = [];
try {
  const leader = await cluster.leaderId();
  const endpoints = [`127.0.0.1:${cluster.at(leader).server.port}`];
  const clientOf = (transport: Transport): DlmClient => {
    const client = new DlmClient({ endpoints, transport });
    clients.push(client);
    return client;
  };
  const by: Record<Transport, DlmClient> = { stream: clientOf('stream'), unary: clientOf('unary') };
  for (const client of clients) await run(client, WARMUP_CALLS);
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order: Transport[] = round % 2 === 0 ? ['stream', 'unary'] : ['unary', 'stream'];
    const idleMsPerSecond = await idleCpuMsPerSecond();
    const perCallMs: Partial<Record<Transport, number>> = {};
    for (const transport of order) {
      perCallMs[transport] = await run(by[transport], calls, idleMsPerSecond);
    }
    const { stream = Number.NaN, unary = Number.NaN } = perCallMs;
    ratios.push(stream / unary);
    process.stdout.write(
      `round ${round + 1}: idle ${idleMsPerSecond.toFixed(0)} CPU ms/s; CPU per call: stream ${stream.toFixed(3)} ms, unary ${unary.toFixed(3)} ms\n`,
    );
  }
  ratios.sort((a, b) => a - b);
  const median = ratios[Math.floor(ratios.length / 2)] ?? Number.NaN;
  process.stdout.write(`stream/unary CPU per call (median of ${rounds}): ×${median.toFixed(2)}\n`);
} finally {
  for (const client of clients) client.close();
  await cluster.stop();
}
