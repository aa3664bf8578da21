import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { parseIntFlags } from './int-flags.ts';

/**
 * The disk's floor under one durable write, the three ways that matter to issue 12:
 * - `append`: write a record at the end of a file and fdatasync it. The file grows, so
 *   the sync must also write the inode (its size): what LevelDB's log does on every
 *   synced write.
 * - `preallocated`: the same into a file already written to its full length, so the
 *   sync writes the data alone: what a WAL that preallocates its segments does (etcd's).
 * - `leveldb`: one synced LevelDB batch of one small put, as a follower's Ready is, with
 *   classic-level's hand-off to its worker thread and back.
 * Each is timed one write at a time (the latency one client sees), in alternating blocks
 * so that noise hits each, after a warm-up block.
 *   node --import tsx scripts/bench-fsync.ts [--writes N] [--rounds R] [--bytes B]
 * The files live under os.tmpdir(): the figures are that disk's.
 */
const FLAGS = { '--writes': 1000, '--rounds': 3, '--bytes': 200 } as const;

type Timed = (i: number) => Promise<void> | void;

async function main(): Promise<void> {
  const args = parseIntFlags('bench-fsync', process.argv.slice(2), FLAGS);
  const writes = args['--writes'];
  const record = Buffer.alloc(args['--bytes'], 0x61);
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-fsync-'));
  const db = new Level<Buffer, Buffer>(join(dir, 'db'), {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
  });
  try {
    await db.open();
    const forms = fileForms(dir, writes, record);
    let key = 0;
    const ways: Record<string, Timed> = {
      append: (i) => forms.append(i),
      preallocated: (i) => forms.preallocated(i),
      leveldb: () => db.batch([{ type: 'put', key: keyOf(key++), value: record }], { sync: true }),
    };
    const times = new Map<string, number[]>(Object.keys(ways).map((name) => [name, []]));
    for (const way of Object.values(ways)) await timeBlock(way, Math.min(writes, 200));
    for (let round = 0; round < args['--rounds']; round++) {
      forms.reset();
      for (const [name, way] of Object.entries(ways)) {
        times.get(name)?.push(...(await timeBlock(way, writes)));
      }
      process.stderr.write(`round ${round + 1}/${args['--rounds']} done\n`);
    }
    forms.close();
    console.log(
      `${writes} writes x ${args['--rounds']} rounds of ${args['--bytes']} bytes, one at a time, in ${dir}`,
    );
    console.log('way            p50 ms  p90 ms  p99 ms');
    for (const [name, ms] of times) {
      ms.sort((a, b) => a - b);
      const at = (q: number) =>
        (ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0).toFixed(3);
      console.log(
        `${name.padEnd(14)} ${at(0.5).padStart(6)}  ${at(0.9).padStart(6)}  ${at(0.99).padStart(6)}`,
      );
    }
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A file appended to, and one written in place within its length; `reset` starts both anew. */
function fileForms(dir: string, writes: number, record: Buffer) {
  const appendPath = join(dir, 'append.log');
  const preallocatedPath = join(dir, 'preallocated.log');
  let appendFd = -1;
  let preallocatedFd = -1;
  const close = () => {
    if (appendFd >= 0) closeSync(appendFd);
    if (preallocatedFd >= 0) closeSync(preallocatedFd);
  };
  const reset = () => {
    close();
    appendFd = openSync(appendPath, 'w');
    preallocatedFd = openSync(preallocatedPath, 'w');
    // Written to its full length and synced once, so its size never changes again.
    writeSync(preallocatedFd, Buffer.alloc((writes + 200) * record.length));
    fdatasyncSync(preallocatedFd);
  };
  reset();
  return {
    reset,
    close,
    append: (_i: number) => {
      writeSync(appendFd, record);
      fdatasyncSync(appendFd);
    },
    preallocated: (i: number) => {
      writeSync(preallocatedFd, record, 0, record.length, i * record.length);
      fdatasyncSync(preallocatedFd);
    },
  };
}

async function timeBlock(way: Timed, count: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    await way(i);
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return ms;
}

function keyOf(n: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(n));
  return key;
}

await main();
