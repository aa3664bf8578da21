/**
 * Many live sessions kept alive by one client process, per-session keepalives against
 * batched ones, alternating on one running 3-node cluster (the machine is noisy: only
 * figures from the same run compare). Per phase: KeepAlive calls/s, sessions per call,
 * leader and follower CPU % and client CPU % (from /proc/PID/stat), and spurious
 * expiries (a session whose signal fired: nothing here closes or stops anything while
 * measuring, so every one is spurious and must be 0). Prints numbers; it is not a test.
 *
 *   nice -n 5 node --import tsx scripts/bench-keepalive.ts \
 *     [--sessions 2000] [--ttl-ms 10000] [--phase-s 30] [--pairs 2] [--only batched]
 *
 * "per-session" is keepAliveBatchMax 1: each session its own call at its own time, as
 * the client did before batching; "batched" is the default 1,000.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DlmClient, type Session } from '../src/client/index.ts';
import { startDlmCluster } from '../src/tools/bench/dlm-cluster.ts';
import { processCpuMs } from '../src/tools/bench/proc-cpu.ts';
import { waitForStableLeader } from '../src/tools/bench/server-cluster.ts';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const value = at === -1 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) {
    process.stderr.write(`${name} must be a positive whole number\n`);
    process.exit(2);
  }
  return value;
}

const SESSIONS = flag('--sessions', 2_000);
const TTL_MS = flag('--ttl-ms', 10_000);
const PHASE_S = flag('--phase-s', 30);
const PAIRS = flag('--pairs', 2);
/** --only batched|per-session: one variant (per-session at 10,000 sessions collapses). */
const ONLY = (() => {
  const at = process.argv.indexOf('--only');
  if (at === -1) return null;
  const value = process.argv[at + 1];
  if (value !== 'batched' && value !== 'per-session') {
    process.stderr.write('--only must be batched or per-session\n');
    process.exit(2);
  }
  return value;
})();
/** Sessions opened (and closed) at once: bounded, so opening does not flood the cluster. */
const OPEN_CONCURRENCY = 50;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function inBatches<T>(count: number, run: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < count; start += OPEN_CONCURRENCY) {
    const size = Math.min(OPEN_CONCURRENCY, count - start);
    results.push(...(await Promise.all(Array.from({ length: size }, (_, i) => run(start + i)))));
  }
  return results;
}

interface PhaseResult {
  readonly variant: string;
  /** Sessions whose OpenSession failed (a cluster in trouble): not counted below. */
  readonly openFailures: number;
  readonly callsPerS: number;
  readonly idsPerCall: number;
  readonly failedCalls: number;
  readonly leaderCpuPct: number;
  readonly followerCpuPct: number;
  readonly clientCpuPct: number;
  readonly spuriousExpiries: number;
}

async function phase(
  endpoints: string[],
  pids: Map<string, number>,
  leader: string,
  variant: 'per-session' | 'batched',
): Promise<PhaseResult> {
  let calls = 0;
  let ids = 0;
  let failed = 0;
  let measuring = false;
  const client = new DlmClient({
    endpoints,
    keepAliveBatchMax: variant === 'batched' ? 1_000 : 1,
    onCall: ({ method, request }) => {
      if (method !== 'KeepAlive' || !measuring) return () => {};
      calls++;
      const batch = (request as { session_ids?: string[] }).session_ids;
      ids += batch === undefined ? 1 : batch.length;
      return (end) => {
        if ('error' in end) failed++;
      };
    },
  });
  const opened = await inBatches(SESSIONS, () =>
    client.openSession({ ttlMs: TTL_MS, clientName: 'bench-keepalive' }).catch(() => null),
  );
  const sessions = opened.filter((session): session is Session => session !== null);
  // One full keepalive interval first, so the measured window is steady state.
  await sleep(TTL_MS / 3 + 500);
  const cpuOf = (id: string) => processCpuMs(pids.get(id) ?? 0);
  const followers = [...pids.keys()].filter((id) => id !== leader);
  const leaderCpu0 = cpuOf(leader);
  const followerCpu0 = followers.map(cpuOf);
  const client0 = process.cpuUsage();
  const started = performance.now();
  measuring = true;
  await sleep(PHASE_S * 1_000);
  measuring = false;
  const seconds = (performance.now() - started) / 1_000;
  const clientUsage = process.cpuUsage(client0);
  const leaderCpuMs = cpuOf(leader) - leaderCpu0;
  const followerCpuMs =
    followers.map(cpuOf).reduce((sum, ms, i) => sum + ms - (followerCpu0[i] ?? 0), 0) /
    Math.max(1, followers.length);
  const lost = sessions.filter((session) => !session.alive).length;
  await inBatches(
    sessions.length,
    (i) => sessions[i]?.close().catch(() => {}) ?? Promise.resolve(),
  );
  client.close();
  return {
    variant,
    openFailures: SESSIONS - sessions.length,
    callsPerS: calls / seconds,
    idsPerCall: calls === 0 ? 0 : ids / calls,
    failedCalls: failed,
    leaderCpuPct: leaderCpuMs / seconds / 10,
    followerCpuPct: followerCpuMs / seconds / 10,
    clientCpuPct: (clientUsage.user + clientUsage.system) / 1_000 / seconds / 10,
    spuriousExpiries: lost,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-bench-keepalive-'));
  const cluster = await startDlmCluster(dir);
  try {
    const leader = await waitForStableLeader(cluster);
    const endpoints = cluster.members.map((member) => member.clientAddress);
    const pids = new Map(cluster.members.map((member) => [member.name, member.pid ?? 0]));
    process.stdout.write(
      `${SESSIONS} sessions, ttl ${TTL_MS} ms, ${PHASE_S} s per phase, ${PAIRS} pairs, leader ${leader}\n`,
    );
    process.stdout.write(
      'variant       calls/s  ids/call  failed  leader CPU %  follower CPU %  client CPU %  spurious expiries  open failures\n',
    );
    for (let pair = 0; pair < PAIRS; pair++) {
      // Alternate which goes first, so a drift in the machine's load favours neither.
      const both: ('per-session' | 'batched')[] =
        pair % 2 === 0 ? ['per-session', 'batched'] : ['batched', 'per-session'];
      const order = ONLY === null ? both : both.filter((variant) => variant === ONLY);
      for (const variant of order) {
        const r = await phase(endpoints, pids, leader, variant);
        const now = await cluster.leader();
        process.stdout.write(
          `${r.variant.padEnd(12)} ${r.callsPerS.toFixed(1).padStart(8)} ${r.idsPerCall.toFixed(1).padStart(9)} ${String(r.failedCalls).padStart(7)} ${r.leaderCpuPct.toFixed(1).padStart(13)} ${r.followerCpuPct.toFixed(1).padStart(15)} ${r.clientCpuPct.toFixed(1).padStart(13)} ${String(r.spuriousExpiries).padStart(18)} ${String(r.openFailures).padStart(14)}${now === leader ? '' : `  (leader changed to ${now})`}\n`,
        );
      }
    }
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
