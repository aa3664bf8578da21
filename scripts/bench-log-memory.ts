/**
 * What the Raft log a node keeps in memory costs per entry (issue 12): N Acquire entries
 * persisted through LevelStorage (real LevelDB) in Ready-sized batches, their data made
 * as a node makes it, then the process's memory read after two full GCs (run with
 * --expose-gc). A node keeps every entry since its last snapshot, up to
 * runtime.snapshotEntriesMax (100,000).
 *
 *   node --expose-gc --import tsx scripts/bench-log-memory.ts [leader|follower] [entries]
 *
 * leader: each entry's data is what encodeEntry returns (a view into msgpackr's shared
 * encoding buffer), and each batch is also packed as a peer message, as the leader's
 * outbox does. follower: each batch arrives packed in one peer message and is unpacked
 * (the data are views into that message).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import type { LockCommand } from '../src/lock/index.ts';
import { decodeEntry, encodeEntry } from '../src/node/entry-codec.ts';
import type { Entry } from '../src/raft/index.ts';
import { LevelStorage } from '../src/storage/index.ts';
import { logIndex, term } from '../src/util/ids.ts';

const BATCH_ENTRIES = 64;
const role = process.argv[2] ?? 'leader';
const count = Number(process.argv[3] ?? 100_000);
if (role !== 'leader' && role !== 'follower')
  throw new Error(`role: leader or follower, got ${role}`);
if (!Number.isSafeInteger(count) || count < 1)
  throw new Error(`entries: a positive integer, got ${process.argv[3]}`);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
function memory() {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external, rss: m.rss };
}

// As the peer transport packs and unpacks a batch of messages.
const wire = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function entryData(i: number): Uint8Array {
  const command = {
    type: 'Acquire',
    lock: `scale/locks-w${i % 2}-${i}`,
    sessionId: 1 + (i % 200),
    mode: 'exclusive',
    waitMs: 0,
    requestId: `n1/ce1a2b3c4d5e/${i}`,
    owner: `host-${i % 200}`,
    maxHoldMs: 0,
    lockDelayMs: 0,
  } as unknown as LockCommand;
  return encodeEntry({ proposalId: `n1/f0ed0c4da0b/${i}`, command });
}

function batchOf(first: number, length: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = first; i < first + length; i++) {
    entries.push({ kind: 'normal', term: term(1), index: logIndex(i), data: entryData(i) });
  }
  const packed = wire.pack({ type: 'AppendEntries', entries });
  if (role === 'leader') return entries;
  return (wire.unpack(packed) as { entries: Entry[] }).entries;
}

const dir = mkdtempSync(join(tmpdir(), 'dlm-log-memory-'));
try {
  const storage = await LevelStorage.open(join(dir, 'db'), { bootstrap: 'join' });
  const before = memory();
  for (let first = 1; first <= count; first += BATCH_ENTRIES) {
    const entries = batchOf(first, Math.min(BATCH_ENTRIES, count - first + 1));
    await storage.persist({ entries, mustSync: true });
    // The node applies what it persisted: decode each entry once, as apply does.
    for (const entry of entries) if (entry.kind === 'normal') decodeEntry(entry.data);
  }
  const after = memory();
  const kept = storage.lastIndex() - storage.firstIndex() + 1;
  const perEntry = (from: number, to: number) => ((to - from) / kept).toFixed(0);
  console.log(
    `${role}: ${kept} entries kept in memory; per entry: heap ${perEntry(before.heap, after.heap)} B, external ${perEntry(before.external, after.external)} B, rss ${perEntry(before.rss, after.rss)} B; heap ${mb(after.heap)} MB, external ${mb(after.external)} MB, rss ${mb(after.rss)} MB`,
  );
  await storage.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
