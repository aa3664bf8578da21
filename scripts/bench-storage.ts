import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Entry } from '../src/raft/types.ts';
import { LevelStorage } from '../src/storage/level-storage.ts';
import { logIndex, nodeId, term } from '../src/util/ids.ts';

/**
 * Persists N entries in batches of B through LevelStorage, each batch one synced write
 * (as the Ready loop does), and prints throughput and batch latency.
 *   node --import tsx scripts/bench-storage.ts [--entries N] [--batch B] [--bytes S]
 * The database lives in a temp dir under os.tmpdir(), so the numbers are that disk's fsync.
 */
interface Args {
  entries: number;
  batchEntries: number;
  entryDataBytes: number;
}

const LIMITS = { entries: 1_000_000, batchEntries: 10_000, entryDataBytes: 1 << 20 } as const;

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { entries: 2000, batchEntries: 10, entryDataBytes: 128 };
  const flags: Record<string, keyof Args> = {
    '--entries': 'entries',
    '--batch': 'batchEntries',
    '--bytes': 'entryDataBytes',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const field = flags[argv[i] ?? ''];
    const value = Number(argv[i + 1]);
    if (field === undefined) fail(`unknown argument ${argv[i]}; use --entries, --batch, --bytes`);
    if (!Number.isSafeInteger(value) || value < 1 || value > LIMITS[field]) {
      fail(`${argv[i]} needs an integer in [1, ${LIMITS[field]}]`);
    }
    args[field] = value;
  }
  return args;
}

function fail(message: string): never {
  process.stderr.write(`bench-storage: ${message}\n`);
  process.exit(2);
}

function percentile(sortedMs: readonly number[], fraction: number): number {
  const position = Math.min(sortedMs.length - 1, Math.ceil(fraction * sortedMs.length) - 1);
  return sortedMs[Math.max(0, position)] ?? Number.NaN;
}

function batchOf(firstIndex: number, count: number, dataBytes: number): Entry[] {
  const data = new Uint8Array(dataBytes).fill(0x61);
  return Array.from({ length: count }, (_, i) => ({
    kind: 'normal' as const,
    index: logIndex(firstIndex + i),
    term: term(1),
    data,
  }));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-storage-'));
  try {
    const storage = await LevelStorage.open(join(dir, 'n1'), {
      bootstrap: { voters: [nodeId('n1')], learners: [] },
    });
    const batchLatenciesMs: number[] = [];
    const startMs = performance.now();
    let next = storage.lastIndex() + 1;
    let remaining = args.entries;
    while (remaining > 0) {
      const count = Math.min(args.batchEntries, remaining);
      const entries = batchOf(next, count, args.entryDataBytes);
      const hardState = { term: term(1), votedFor: null, commitIndex: logIndex(next + count - 1) };
      const batchStartMs = performance.now();
      await storage.persist({ entries, hardState });
      batchLatenciesMs.push(performance.now() - batchStartMs);
      next += count;
      remaining -= count;
    }
    const elapsedMs = performance.now() - startMs;
    await storage.close();
    report(args, elapsedMs, batchLatenciesMs);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function report(args: Args, elapsedMs: number, batchLatenciesMs: number[]): void {
  const sorted = [...batchLatenciesMs].sort((x, y) => x - y);
  const lines = [
    `entries=${args.entries} batch=${args.batchEntries} entryDataBytes=${args.entryDataBytes} (sync: true)`,
    `batches=${sorted.length} elapsedMs=${elapsedMs.toFixed(1)}`,
    `entriesPerSecond=${((args.entries * 1000) / elapsedMs).toFixed(0)} batchesPerSecond=${((sorted.length * 1000) / elapsedMs).toFixed(0)}`,
    `batchLatencyMs p50=${percentile(sorted, 0.5).toFixed(3)} p99=${percentile(sorted, 0.99).toFixed(3)} max=${(sorted.at(-1) ?? Number.NaN).toFixed(3)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
