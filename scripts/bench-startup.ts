/**
 * How long `dlm serve` takes to start, from source through tsx and compiled from dist/:
 *
 * - serve: one node (a one-node cluster, fresh data directory), from process spawn to
 *   its first Cluster.Status answer;
 * - restart: a three-node cluster holding a session and a lock is killed (kill -9) and
 *   started again, from the spawn of all three to the first linearizable Describe
 *   (stale = false, so a leader was elected and confirmed its read index) any node
 *   answers.
 *
 * Each also reports the CPU time the node processes had used by then (utime + stime from
 * /proc/PID/stat, in clock ticks of 10 ms): on a loaded shared machine the wall times
 * swing by seconds, the CPU a start costs much less.
 *
 * Runs alternate between the two launchers, and each pair swaps which goes first, so
 * that load on a shared machine hits both alike. tsx keeps its compiled files in a disk
 * cache; the first run warms it, as a user's first start would.
 *
 *   node --import tsx scripts/bench-startup.ts [--runs 5]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../src/api/proto.ts';
import { newRequestId, ProcessCluster } from '../test/support/process-cluster.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const LAUNCHERS = {
  tsx: ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')],
  dist: [join(ROOT, 'bin/dlm')],
} as const;
type Launcher = keyof typeof LAUNCHERS;
/** A node that is not listening yet is retried this often (grpc-js's default is 1 s). */
const RECONNECT_MS = 5;
const GIVE_UP_MS = 60_000;
const RETRY_MS = 5;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);

type Service = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options: object,
) => grpc.Client;
const v1 = (
  grpc.loadPackageDefinition(packageDefinition) as unknown as {
    dlm: { v1: { Cluster: Service; Lock: Service } };
  }
).dlm.v1;

/** Calls `method` on `address` until it answers; resolves with when it did. */
async function firstAnswerMs(
  service: Service,
  address: string,
  method: string,
  request: object,
): Promise<number> {
  const client = new service(address, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': RECONNECT_MS,
    'grpc.max_reconnect_backoff_ms': RECONNECT_MS,
  });
  const deadline = Date.now() + GIVE_UP_MS;
  try {
    for (;;) {
      const answered = await new Promise<boolean>((resolve) => {
        type Unary = (
          request: object,
          options: grpc.CallOptions,
          done: (e: Error | null) => void,
        ) => void;
        const call = (client as unknown as Record<string, Unary>)[method];
        call?.call(client, request, { deadline, waitForReady: true }, (error: Error | null) =>
          resolve(error === null),
        );
      });
      if (answered) return performance.now();
      if (Date.now() > deadline) throw new Error(`${address} did not answer ${method} in time`);
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  } finally {
    client.close();
  }
}

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** CPU ms (user + system) a process has used so far. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) throw new Error('a node process has no pid');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

interface Start {
  readonly wallMs: number;
  /** CPU of all the node processes started, up to the answer. */
  readonly cpuMs: number;
}

async function serveMs(launcher: Launcher): Promise<Start> {
  const cluster = await ProcessCluster.create(1);
  try {
    const node = cluster.nodes[0];
    if (node === undefined) throw new Error('a one-node cluster has no node');
    const spawnedMs = performance.now();
    cluster.start(node.id, { command: LAUNCHERS[launcher] });
    const answeredMs = await firstAnswerMs(v1.Cluster, node.clientAddress, 'Status', {});
    return { wallMs: answeredMs - spawnedMs, cpuMs: cpuMs(cluster.pid(node.id)) };
  } finally {
    await cluster.stopAll();
    cluster.remove();
  }
}

async function restartMs(launcher: Launcher): Promise<Start> {
  const cluster = await ProcessCluster.create(3);
  try {
    cluster.startAll({ command: LAUNCHERS[launcher] });
    const leader = await cluster.waitForLeader(GIVE_UP_MS);
    const opening = { ttl_ms: 60_000, client_name: 'bench-startup', request_id: newRequestId() };
    const session = await cluster.callNode(leader, 'OpenSession', opening);
    const lock = {
      lock: 'startup',
      session_id: session.session_id,
      wait_ms: 0,
      request_id: newRequestId(),
    };
    await cluster.callNode(leader, 'Acquire', lock);
    await cluster.stopAll();
    const spawnedMs = performance.now();
    cluster.startAll({ command: LAUNCHERS[launcher] });
    const reads = cluster.nodes.map((node) =>
      firstAnswerMs(v1.Lock, node.clientAddress, 'Describe', { lock: 'startup', stale: false }),
    );
    const answeredMs = await Promise.any(reads);
    const cpu = cluster.nodes.reduce((sum, node) => sum + cpuMs(cluster.pid(node.id)), 0);
    return { wallMs: answeredMs - spawnedMs, cpuMs: cpu };
  } finally {
    await cluster.stopAll();
    cluster.remove();
  }
}

function summary(samplesMs: readonly number[]): string {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const upper = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  const lower = sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
  const median = (upper + lower) / 2;
  const all = samplesMs.map((ms) => ms.toFixed(0)).join(' ');
  return `median ${median.toFixed(0).padStart(5)} ms   (${all})`;
}

const samples = new Map<string, number[]>();
function record(name: string, ms: number): void {
  samples.set(name, [...(samples.get(name) ?? []), ms]);
}

for (let run = 0; run < runs; run++) {
  const order: Launcher[] = run % 2 === 0 ? ['tsx', 'dist'] : ['dist', 'tsx'];
  for (const launcher of order) {
    const serve = await serveMs(launcher);
    const restart = await restartMs(launcher);
    record(`serve   ${launcher} wall`, serve.wallMs);
    record(`serve   ${launcher} cpu`, serve.cpuMs);
    record(`restart ${launcher} wall`, restart.wallMs);
    record(`restart ${launcher} cpu`, restart.cpuMs);
    process.stderr.write(
      `run ${run + 1}/${runs} ${launcher.padEnd(4)}: serve ${serve.wallMs.toFixed(0)} ms (cpu ${serve.cpuMs.toFixed(0)}), ` +
        `restart ${restart.wallMs.toFixed(0)} ms (cpu ${restart.cpuMs.toFixed(0)})\n`,
    );
  }
}
for (const [name, values] of [...samples].sort()) {
  process.stdout.write(`${name.padEnd(17)} ${summary(values)}\n`);
}
