import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LevelStorage } from '../src/storage/index.ts';
import { logIndex, nodeId, term } from '../src/util/ids.ts';
import { parseIntFlags } from './int-flags.ts';

/**
 * What reading a stored snapshot's data back costs a leader's event loop (issue 12).
 * A node keeps its latest snapshot's bytes on disk (src/storage/snapshot-read.ts); a
 * leader whose copy was collected reads them back when a follower needs them. Two ways,
 * alternating, each after a full collection so that nothing is in memory:
 *   at once      `snapshot().data`: chunks read with getSync, the event loop held
 *   background   `snapshotDataReady()` until true, as the Raft core asks: an iterator,
 *                a chunk a turn
 * Printed per way: the wall time until the data is in hand, and the longest the event
 * loop was held (at once, the whole read; in the background, its longest turn).
 *   node --expose-gc --import tsx scripts/bench-snapshot-read.ts [--mb N] [--rounds R]
 * (--expose-gc optional: the script turns it on itself.) The data compresses about as
 * a lock snapshot does; the database lives under os.tmpdir().
 */
const FLAGS = { '--mb': 30, '--rounds': 4 } as const;

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

async function main(): Promise<void> {
  const args = parseIntFlags('bench-snapshot-read', process.argv.slice(2), FLAGS, 1024);
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-snapshot-read-'));
  const storage = await storeSnapshot(join(dir, 'db'), args['--mb'] * 2 ** 20);
  try {
    const rows: Array<{ way: string; wallMs: number; heldMs: number }> = [];
    for (let round = 0; round < args['--rounds']; round++) {
      const ways = round % 2 === 0 ? [atOnce, background] : [background, atOnce];
      for (const way of ways) rows.push(await way(storage));
      process.stderr.write(`round ${round + 1}/${args['--rounds']} done\n`);
    }
    console.log(`${args['--mb']} MB of snapshot data, ${args['--rounds']} rounds, in ${dir}`);
    console.log('way          wall ms   event loop held ms');
    for (const { way, wallMs, heldMs } of rows) {
      console.log(
        `${way.padEnd(12)} ${wallMs.toFixed(0).padStart(7)}   ${heldMs.toFixed(1).padStart(18)}`,
      );
    }
  } finally {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A store whose latest snapshot holds `bytes` of data, reopened so none of it is in hand. */
async function storeSnapshot(path: string, bytes: number): Promise<LevelStorage> {
  const config = { voters: [nodeId('n1')], learners: [] };
  const storage = await LevelStorage.open(path, { bootstrap: config });
  const entry = {
    kind: 'normal' as const,
    index: logIndex(2),
    term: term(1),
    data: new Uint8Array([1]),
  };
  await storage.persist({ entries: [entry] });
  await storage.createSnapshot(logIndex(2), config, snapshotLike(bytes));
  await storage.close();
  return LevelStorage.open(path);
}

/** Text and numbers mixed, so that LevelDB's compression does about what it does to a lock snapshot. */
function snapshotLike(bytes: number): Uint8Array {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) {
    data[i] = (i * 2_654_435_761) % 97 < 40 ? 65 + (i % 26) : (i >> 3) & 0xff;
  }
  return data;
}

async function dropped(): Promise<void> {
  // A WeakRef keeps its target to the end of the job that last touched it.
  await turn();
  collect();
  await turn();
}

async function atOnce(storage: LevelStorage) {
  await dropped();
  const start = performance.now();
  const bytes = storage.snapshot().data.byteLength;
  const wallMs = performance.now() - start;
  check(bytes);
  return { way: 'at once', wallMs, heldMs: wallMs };
}

async function background(storage: LevelStorage) {
  await dropped();
  const start = performance.now();
  let heldMs = 0;
  while (!storage.snapshotDataReady()) {
    const before = performance.now();
    await turn();
    heldMs = Math.max(heldMs, performance.now() - before);
  }
  const bytes = storage.snapshot().data.byteLength;
  const wallMs = performance.now() - start;
  check(bytes);
  return { way: 'background', wallMs, heldMs };
}

let expectedBytes = -1;
function check(bytes: number): void {
  if (expectedBytes === -1) expectedBytes = bytes;
  if (bytes !== expectedBytes) throw new Error(`read ${bytes} bytes, expected ${expectedBytes}`);
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

await main();
