import { newRequestId, ProcessCluster } from '../test/support/process-cluster.ts';

/**
 * Single-client latency of acquire+release against a real 3-node cluster (three
 * `dlm serve` processes on LevelDB), through the leader and through a follower.
 *
 *   node --import tsx scripts/bench-cluster.ts [--pairs N]      (default 300, max 10000)
 */
const pairsArg = process.argv.indexOf('--pairs');
const pairs = pairsArg >= 0 ? Number(process.argv[pairsArg + 1]) : 300;
if (!Number.isInteger(pairs) || pairs < 1 || pairs > 10_000) {
  process.stderr.write(
    `bench-cluster: --pairs must be an integer in 1..10000, got ${process.argv[pairsArg + 1]}\n`,
  );
  process.exit(2);
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function measure(
  cluster: ProcessCluster,
  node: string,
  session: string,
  label: string,
): Promise<void> {
  const latenciesMs: number[] = [];
  const started = performance.now();
  for (let i = 0; i < pairs; i++) {
    const t0 = performance.now();
    const acquired = await cluster.callNode(node, 'Acquire', {
      lock: `bench/${label}`,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      request_id: newRequestId(),
      owner: 'bench',
    });
    await cluster.callNode(node, 'Release', {
      lock: `bench/${label}`,
      session_id: session,
      fencing_token: acquired.fencing_token,
      request_id: newRequestId(),
    });
    latenciesMs.push(performance.now() - t0);
    if (i > 0 && i % 100 === 0) process.stdout.write(`  ${label}: ${i}/${pairs}\n`);
  }
  const seconds = (performance.now() - started) / 1000;
  latenciesMs.sort((a, b) => a - b);
  process.stdout.write(
    `${label.padEnd(9)} ${pairs} acquire+release pairs: p50 ${percentile(latenciesMs, 50).toFixed(2)} ms, ` +
      `p99 ${percentile(latenciesMs, 99).toFixed(2)} ms, max ${latenciesMs.at(-1)?.toFixed(2)} ms, ${(pairs / seconds).toFixed(0)} pairs/s\n`,
  );
}

const cluster = await ProcessCluster.create(3, { raft: { tickIntervalMs: 50 } });
try {
  cluster.startAll();
  const leader = await cluster.waitForLeader(20_000);
  const follower = cluster.nodes.find((node) => node.id !== leader)?.id ?? leader;
  const opened = await cluster.callAny('OpenSession', {
    ttl_ms: '60000',
    client_name: 'bench',
    request_id: newRequestId(),
  });
  const session = String(opened.session_id);
  await measure(cluster, leader, session, 'leader');
  await measure(cluster, follower, session, 'follower');
} finally {
  await cluster.stopAll();
  cluster.remove();
}
