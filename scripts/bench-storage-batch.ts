import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import {
  type BatchOp,
  type Bytes,
  delEntry,
  openSublevels,
  putEntry,
  putHardState,
  type Sublevels,
  writeBatch,
} from '../src/storage/level-layout.ts';
import { logIndex, nodeId, term } from '../src/util/ids.ts';
import { parseIntFlags } from './int-flags.ts';

/**
 * What one LevelDB write costs: the process's CPU (every thread: LevelDB's write and
 * background compaction run off the event loop) and the event loop's own time, written
 * the way LevelStorage does (`writeBatch`: classic-level's `_batch`, dlm adding the
 * sublevel prefixes), the two ways abstract-level offers (`db.batch(ops)`, an array of
 * ops naming their sublevel, and a chained batch built op by op, which LevelStorage
 * used before), and a fourth way dlm does not use (see asRun). Each write is the shape
 * a follower's Ready makes: E entries, the deletion of E compacted ones, and the hard
 * state. The forms alternate in blocks, after a warm-up, so that noise hits each.
 *   node --import tsx scripts/bench-storage-batch.ts [--entries-per-write E] [--writes N] [--rounds R]
 * Unsynced (sync: false): the figure is the event loop's cost, not the disk's.
 */
const FLAGS = { '--entries-per-write': 4, '--writes': 4000, '--rounds': 3 } as const;

type Write = (db: Level<Bytes, Bytes>, ops: BatchOp[]) => Promise<void>;
const FORMS: Record<string, Write> = {
  writeBatch: (db, ops) => writeBatch(db, ops, false),
  'db.batch(ops)': (db, ops) => db.batch(ops, { sync: false }),
  chained: (db, ops) => chained(db, ops),
  'one run a write': (db, ops) => writeBatch(db, asRun(ops), false),
};

async function chained(db: Level<Bytes, Bytes>, ops: BatchOp[]): Promise<void> {
  const batch = db.batch();
  for (const op of ops) {
    if (op.type === 'put') batch.put(op.key, op.value, { sublevel: op.sublevel });
    else batch.del(op.key, { sublevel: op.sublevel });
  }
  await batch.write({ sync: false });
}

/**
 * Not a layout dlm uses: what it would cost to store a write's entries as one value
 * under the first entry's key (and delete one such value), against a key per entry.
 */
function asRun(ops: BatchOp[]): BatchOp[] {
  const puts = ops.filter((op) => op.type === 'put' && op.sublevel === ops[0]?.sublevel);
  const rest = ops.filter((op) => !puts.includes(op));
  const dels = rest.filter((op) => op.type === 'del');
  const others = rest.filter((op) => op.type !== 'del');
  const first = puts[0];
  if (first === undefined || first.type !== 'put') return ops;
  const value = Buffer.concat(puts.map((op) => (op.type === 'put' ? op.value : new Uint8Array())));
  return [{ ...first, value }, ...dels.slice(0, 1), ...others];
}

/** A follower's write: E new entries, E compacted ones deleted, the hard state. */
function followerWrite(sublevels: Sublevels, first: number, perWrite: number): BatchOp[] {
  const data = new Uint8Array(120).fill(0x61);
  const ops: BatchOp[] = [];
  for (let i = 0; i < perWrite; i++) {
    const index = logIndex(first + i);
    ops.push(putEntry(sublevels, { kind: 'normal', index, term: term(1), data }));
    if (first > perWrite) ops.push(delEntry(sublevels, logIndex(first + i - perWrite)));
  }
  const commit = logIndex(first + perWrite - 1);
  ops.push(putHardState(sublevels, { term: term(1), votedFor: nodeId('n1'), commitIndex: commit }));
  return ops;
}

async function main(): Promise<void> {
  const args = parseIntFlags('bench-storage-batch', process.argv.slice(2), FLAGS);
  const perWrite = args['--entries-per-write'];
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-batch-'));
  const db = new Level<Bytes, Bytes>(join(dir, 'db'), {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  const sublevels = openSublevels(db);
  let next = 1;
  const block = async (write: Write, writes: number): Promise<[number, number]> => {
    const before = performance.eventLoopUtilization();
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < writes; i++) {
      await write(db, followerWrite(sublevels, next, perWrite));
      next += perWrite;
    }
    const cpu = process.cpuUsage(cpuBefore);
    return [performance.eventLoopUtilization(before).active, (cpu.user + cpu.system) / 1000];
  };
  try {
    for (const write of Object.values(FORMS)) await block(write, 2000);
    const totals = new Map<string, number[]>();
    for (let round = 1; round <= args['--rounds']; round++) {
      for (const [name, write] of Object.entries(FORMS)) {
        const [activeMs, cpuMs] = await block(write, args['--writes']);
        const cpuUs = (1000 * cpuMs) / args['--writes'];
        totals.set(name, [...(totals.get(name) ?? []), cpuUs]);
        console.log(
          `round ${round}  ${name.padEnd(22)} event loop ${((1000 * activeMs) / args['--writes']).toFixed(1)} µs a write, process CPU ${cpuUs.toFixed(1)} µs a write`,
        );
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const [own, ...others] = [...totals.entries()].map(
      ([name, cpus]) => [name, median(cpus)] as const,
    );
    const ratios = others.map(([name, cpu]) => `${((own?.[1] ?? 0) / cpu).toFixed(2)}x ${name}'s`);
    console.log(
      `${perWrite} entries a write (${2 * perWrite + 1} ops): writeBatch costs ${ratios.join(', ')} process CPU (medians)`,
    );
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
