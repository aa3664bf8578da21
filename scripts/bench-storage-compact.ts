import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import { encodeIndexKey } from '../src/storage/keys.ts';
import {
  type Bytes,
  delEntry,
  openSublevels,
  putCompactionPoint,
  putEntry,
  type Sublevels,
  writeBatch,
} from '../src/storage/level-layout.ts';
import { type LogIndex, logIndex, term } from '../src/util/ids.ts';
import { parseIntFlags } from './int-flags.ts';

/**
 * What deleting the log behind a snapshot costs, the two ways dlm has done it, on one
 * database, alternating after a warm-up:
 *   batched  what LevelStorage.compact did before: a synced batch of delete ops (and
 *            the new compaction point) per slice of --slice entries
 *   cleared  what it does now: the compaction point in one synced batch, then one range
 *            clear, which LevelDB runs in its own thread
 * Each round appends --entries entries of 150 bytes (not measured), then
 * compacts them. Printed per way: wall ms, the process's CPU ms (every thread) and the
 * event loop's busy ms per compaction.
 *   node --import tsx scripts/bench-storage-compact.ts [--entries N] [--slice S] [--rounds R]
 */
const FLAGS = { '--entries': 9_000, '--slice': 250, '--rounds': 6 } as const;
const WARMUP_ROUNDS = 2;
const ENTRY_BYTES = 150;
const SETTLE_MS = 200;

type Way = 'batched' | 'cleared';

interface Cost {
  wallMs: number;
  cpuMs: number;
  loopBusyMs: number;
}

type Db = Level<Bytes, Bytes>;

async function append(db: Db, sublevels: Sublevels, from: number, count: number): Promise<void> {
  const data = new Uint8Array(ENTRY_BYTES);
  const ops = Array.from({ length: count }, (_, i) =>
    putEntry(sublevels, { kind: 'normal', index: logIndex(from + i), term: term(1), data }),
  );
  await writeBatch(db, ops, true);
}

async function compactBatched(
  db: Db,
  sublevels: Sublevels,
  from: number,
  to: number,
  slice: number,
): Promise<void> {
  for (let start = from; start <= to; start += slice) {
    const end = Math.min(to, start + slice - 1);
    const ops = [];
    for (let index = start; index <= end; index++) ops.push(delEntry(sublevels, logIndex(index)));
    ops.push(putCompactionPoint(sublevels, { index: logIndex(end), term: term(1) }));
    await writeBatch(db, ops, true);
  }
}

async function compactCleared(
  db: Db,
  sublevels: Sublevels,
  from: number,
  to: number,
): Promise<void> {
  await writeBatch(
    db,
    [putCompactionPoint(sublevels, { index: logIndex(to), term: term(1) })],
    true,
  );
  await sublevels.log.clear({
    gt: encodeIndexKey(logIndex(from - 1) as LogIndex),
    lte: encodeIndexKey(logIndex(to)),
  });
}

async function measure(work: () => Promise<void>): Promise<Cost> {
  const cpuStart = process.cpuUsage();
  const loopStart = performance.eventLoopUtilization();
  const wallStart = performance.now();
  await work();
  const wallMs = performance.now() - wallStart;
  const cpu = process.cpuUsage(cpuStart);
  const loop = performance.eventLoopUtilization(loopStart);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, loopBusyMs: loop.active };
}

async function main(): Promise<void> {
  const args = parseIntFlags('bench-storage-compact', process.argv.slice(2), FLAGS);
  const entries = args['--entries'];
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-compact-'));
  const db: Db = new Level<Bytes, Bytes>(join(dir, 'db'), {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  const sublevels = openSublevels(db);
  const costs: Record<Way, Cost[]> = { batched: [], cleared: [] };
  let next = 1;
  try {
    for (let round = 0; round < WARMUP_ROUNDS + args['--rounds']; round++) {
      for (const way of (round % 2 === 0
        ? ['batched', 'cleared']
        : ['cleared', 'batched']) as Way[]) {
        const from = next;
        const to = next + entries - 1;
        next += entries;
        await append(db, sublevels, from, entries);
        // The append's garbage and its background flush are not the compaction's cost.
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        const cost = await measure(() =>
          way === 'batched'
            ? compactBatched(db, sublevels, from, to, args['--slice'])
            : compactCleared(db, sublevels, from, to),
        );
        if (round >= WARMUP_ROUNDS) costs[way].push(cost);
      }
      process.stderr.write(`round ${round + 1}/${WARMUP_ROUNDS + args['--rounds']}\n`);
    }
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
  report(entries, args['--slice'], costs);
}

function report(entries: number, slice: number, costs: Record<Way, Cost[]>): void {
  const median = (values: number[]) =>
    values.sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;
  console.log(
    `compacting ${entries} entries (batched: slices of ${slice}); medians per compaction`,
  );
  console.log('way       wall ms   cpu ms   loop busy ms');
  for (const way of ['batched', 'cleared'] as const) {
    const of = (pick: (cost: Cost) => number) =>
      median(costs[way].map(pick)).toFixed(1).padStart(8);
    console.log(
      `${way.padEnd(8)} ${of((c) => c.wallMs)} ${of((c) => c.cpuMs)} ${of((c) => c.loopBusyMs)}`,
    );
  }
}

await main();
