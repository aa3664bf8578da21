/**
 * How often a new cluster's leadership moves right after its birth, when n1 (the
 * founder that generates the cluster id) starts first and the others only once it
 * answers, as test/cluster/observability.test.ts starts them: n1's links to them then
 * sit in reconnect backoff, and they learn the id from it late and one at a time.
 *
 * Each run starts a fresh three-node cluster of real `dlm serve` processes, waits for a
 * leader, watches for 4 s more, and counts the leaders (node@term) their logs name.
 * Prints one line per run and the total. Give `--root` another checkout (a worktree
 * of an older commit, say) to count its code instead; alternate the two for an A/B.
 *
 *   node --import tsx scripts/birth-leader-changes.ts [--runs 10] [--root DIR]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '10' }, root: { type: 'string' } },
});
const ROOT = values.root ?? fileURLToPath(new URL('../', import.meta.url));
const RUNS_MAX = 1_000;
const WATCH_MS = 4_000;
const N1_ANSWER_TRIES_MAX = 600;

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  const runs = Math.min(Number(values.runs), RUNS_MAX);
  const { ProcessCluster } = (await import(
    join(ROOT, 'src/tools/process-cluster.ts')
  )) as typeof import('../src/tools/process-cluster.ts');
  let changed = 0;
  for (let run = 1; run <= runs; run++) {
    const c = await ProcessCluster.create(3);
    try {
      c.start('n1');
      for (let tries = 1; ; tries++) {
        try {
          await c.callNode('n1', 'Check', { service: '' }, 10_000, 'Health');
          break;
        } catch (error) {
          if (tries >= N1_ANSWER_TRIES_MAX) throw error;
          await sleep(50);
        }
      }
      c.start('n2');
      c.start('n3');
      await c.waitForLeader(15_000);
      await sleep(WATCH_MS);
      const leaders = new Set<string>();
      for (const id of ['n1', 'n2', 'n3']) {
        for (const line of readFileSync(c.logPath(id), 'utf8').split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as { msg?: string; role?: string; term?: number };
          if (entry.msg === 'raft state changed' && entry.role === 'leader') {
            leaders.add(`${id}@${entry.term}`);
          }
        }
      }
      if (leaders.size > 1) changed++;
      console.log(`run ${run}: leaders ${[...leaders].join(' ')}`);
    } finally {
      await c.stopAll();
      c.remove();
    }
  }
  console.log(`${changed} of ${runs} runs changed leader after birth (root ${ROOT})`);
}

await main();
