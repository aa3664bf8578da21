import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { newRequestId, ProcessCluster } from '../test/support/process-cluster.ts';

/**
 * TEMPORARY (issue 12): the write path before and after on ONE running 3-node cluster,
 * switching every block of pairs (SIGUSR2 toggles the old, serial write path), so that
 * both variants see the same load of a shared machine. After a warm-up, blocks run in
 * ABBA order per cell; the report gives totals per variant and the median ratio of
 * neighbouring blocks.
 *   node --import tsx scripts/bench-write-path.ts [--warmup 3000] [--blocks 12] [--block-pairs 150]
 */
function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}
const warmupPairs = flag('warmup', 3000);
const blocks = flag('blocks', 12);
const blockPairs = flag('block-pairs', 150);
const concurrentClients = flag('clients', 16);
const CLOCK_TICKS_PER_S = 100;

type Variant = 'overlapped' | 'serial';

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command name.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

const KEEPALIVE_INTERVAL_MS = 20_000;

async function openSession(cluster: ProcessCluster, node: string): Promise<string> {
  const opened = await cluster.callNode(node, 'OpenSession', {
    ttl_ms: '60000',
    client_name: 'bench',
    request_id: newRequestId(),
  });
  const session = String(opened.session_id);
  const timer = setInterval(() => {
    cluster.call(node, 'KeepAlive', { session_id: session }).catch(() => {});
  }, KEEPALIVE_INTERVAL_MS);
  timer.unref();
  return session;
}

async function pair(
  cluster: ProcessCluster,
  node: string,
  session: string,
  lock: string,
): Promise<number> {
  const t0 = performance.now();
  const acquired = await cluster.call(node, 'Acquire', {
    lock,
    session_id: session,
    mode: 'EXCLUSIVE',
    wait_ms: '0',
    request_id: newRequestId(),
    owner: 'bench',
  });
  if (acquired.acquired !== true) throw new Error(`not acquired: ${JSON.stringify(acquired)}`);
  await cluster.call(node, 'Release', {
    lock,
    session_id: session,
    fencing_token: acquired.fencing_token,
    request_id: newRequestId(),
  });
  return performance.now() - t0;
}

interface Totals {
  latenciesMs: number[];
  seconds: number;
  writes: number;
  leaderCpuMs: number;
  followersCpuMs: number;
  loadCpuMs: number;
  blockPairsPerS: number[];
  blockP50Ms: number[];
  blockLeaderCpuMsPerWrite: number[];
}

function emptyTotals(): Totals {
  return {
    latenciesMs: [],
    seconds: 0,
    writes: 0,
    leaderCpuMs: 0,
    followersCpuMs: 0,
    loadCpuMs: 0,
    blockPairsPerS: [],
    blockP50Ms: [],
    blockLeaderCpuMsPerWrite: [],
  };
}

class Bench {
  private current: Variant = 'overlapped';

  constructor(
    private readonly cluster: ProcessCluster,
    private readonly pids: Map<string, number>,
    private readonly leader: string,
  ) {}

  async use(variant: Variant): Promise<void> {
    if (variant === this.current) return;
    for (const pid of this.pids.values()) process.kill(pid, 'SIGUSR2');
    this.current = variant;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  async block(totals: Totals, sessions: readonly string[], pairsPerClient: number, name: string) {
    const before = new Map([...this.pids].map(([id, pid]) => [id, cpuMs(pid)]));
    const loadBefore = process.cpuUsage();
    const started = performance.now();
    const latenciesMs: number[] = [];
    await Promise.all(
      sessions.map(async (session, client) => {
        for (let i = 0; i < pairsPerClient; i++) {
          latenciesMs.push(
            await pair(this.cluster, this.leader, session, `bench/${name}/${client}`),
          );
        }
      }),
    );
    totals.latenciesMs.push(...latenciesMs);
    totals.blockP50Ms.push(median(latenciesMs));
    const seconds = (performance.now() - started) / 1000;
    const load = process.cpuUsage(loadBefore);
    totals.seconds += seconds;
    totals.writes += 2 * sessions.length * pairsPerClient;
    totals.loadCpuMs += (load.user + load.system) / 1000;
    totals.blockPairsPerS.push((sessions.length * pairsPerClient) / seconds);
    for (const [id, pid] of this.pids) {
      const spent = cpuMs(pid) - (before.get(id) ?? 0);
      if (id === this.leader) {
        totals.leaderCpuMs += spent;
        totals.blockLeaderCpuMsPerWrite.push(spent / (2 * sessions.length * pairsPerClient));
      } else totals.followersCpuMs += spent;
    }
  }
}

function report(cell: string, variant: Variant, totals: Totals): Record<string, unknown> {
  const sorted = [...totals.latenciesMs].sort((a, b) => a - b);
  const pairs = totals.latenciesMs.length;
  return {
    cell,
    variant,
    pairs,
    pairsPerS: Math.round(pairs / totals.seconds),
    p50Ms: Number(percentile(sorted, 50).toFixed(2)),
    p99Ms: Number(percentile(sorted, 99).toFixed(2)),
    leaderCpuMsPerWrite: Number((totals.leaderCpuMs / totals.writes).toFixed(3)),
    followerCpuMsPerWrite: Number((totals.followersCpuMs / 2 / totals.writes).toFixed(3)),
    loadCpuMsPerWrite: Number((totals.loadCpuMs / totals.writes).toFixed(3)),
  };
}

async function runCell(
  bench: Bench,
  cell: string,
  sessions: readonly string[],
  pairsPerClient: number,
) {
  const totals: Record<Variant, Totals> = { overlapped: emptyTotals(), serial: emptyTotals() };
  const ratios = { pairsPerS: [] as number[], p50: [] as number[], leaderCpu: [] as number[] };
  for (let b = 0; b < blocks; b++) {
    // ABBA: overlapped, serial, serial, overlapped, ...
    const variant: Variant = b % 4 === 0 || b % 4 === 3 ? 'overlapped' : 'serial';
    await bench.use(variant);
    await bench.block(totals[variant], sessions, pairsPerClient, cell.replace(/\W+/g, '-'));
    if (b % 2 === 1) {
      const last = (t: Totals, key: 'blockPairsPerS' | 'blockP50Ms' | 'blockLeaderCpuMsPerWrite') =>
        t[key].at(-1) ?? Number.NaN;
      const { overlapped: o, serial: s } = totals;
      ratios.pairsPerS.push(last(o, 'blockPairsPerS') / last(s, 'blockPairsPerS'));
      ratios.p50.push(last(o, 'blockP50Ms') / last(s, 'blockP50Ms'));
      ratios.leaderCpu.push(
        last(o, 'blockLeaderCpuMsPerWrite') / last(s, 'blockLeaderCpuMsPerWrite'),
      );
    }
  }
  for (const variant of ['overlapped', 'serial'] as const) {
    process.stdout.write(`${JSON.stringify(report(cell, variant, totals[variant]))}\n`);
  }
  const fmt = (r: number) => r.toFixed(2);
  for (const [what, values] of Object.entries(ratios)) {
    process.stdout.write(
      `${cell}: overlapped/serial ${what} per neighbouring blocks: median ${fmt(median(values))} [${values.map(fmt).join(' ')}]\n`,
    );
  }
}

const cluster = await ProcessCluster.create(3, { raft: { tickIntervalMs: 50 } });
try {
  cluster.startAll();
  const leader = await cluster.waitForLeader(20_000, 1_000);
  const processes = Reflect.get(cluster, 'processes') as Map<string, ChildProcess>;
  const pids = new Map([...processes].map(([id, child]) => [id, child.pid ?? 0]));
  const bench = new Bench(cluster, pids, leader);
  const one = [await openSession(cluster, leader)];
  const started = performance.now();
  for (let i = 0; i < warmupPairs; i++) await pair(cluster, leader, one[0] ?? '', 'bench/warmup');
  process.stdout.write(
    `warm-up: ${warmupPairs} pairs in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  await runCell(bench, '1 client', one, blockPairs);
  const many = await Promise.all(
    Array.from({ length: concurrentClients }, () => openSession(cluster, leader)),
  );
  await runCell(
    bench,
    `${concurrentClients} clients, distinct locks`,
    many,
    Math.max(1, Math.round(blockPairs / concurrentClients)),
  );
} finally {
  await cluster.stopAll();
  cluster.remove();
}
