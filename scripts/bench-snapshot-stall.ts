import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { LockStateMachine } from '../src/lock/index.ts';
import { encodeLockSnapshot } from '../src/node/entry-codec.ts';
import { Snapshotter } from '../src/node/snapshotter.ts';
import type { ClusterConfig, Entry } from '../src/raft/types.ts';
import { LevelStorage } from '../src/storage/level-storage.ts';
import { type LogIndex, logIndex, nodeId, sessionId, term } from '../src/util/ids.ts';

/**
 * What one snapshot costs the writes around it (issue 12's acquire stalls), old way
 * against new, alternating on one database:
 *   inline      the way the node took snapshots before: inside the Ready loop, encoded
 *               in one piece, stored, then the log compacted in one batch
 *   background  src/node/snapshotter.ts: copied at once, encoded in slices with the
 *               event loop turning, stored beside the log writes, compacted in slices
 *   none        no snapshot: the control, what the machine does to the writes anyway
 * and, with --chunks, `background` again with each of those snapshot chunk sizes
 * (runtime.snapshotChunkBytes; each chunk is a synced write that the log writes queue
 * behind).
 * A writer persists one entry at a time, synced (a Ready loop under steady load), and
 * a snapshot is due every --every entries. Printed per variant: the slowest write
 * (what a client's call waits behind), p99 and mean, the event loop's longest delay,
 * and the seconds the variant's writes took in all (what a serial chain of writes, a
 * hot lock's hand-offs, loses to the snapshot).
 *   node --import tsx scripts/bench-snapshot-stall.ts [--window N] [--rounds R] [--every E]
 *     [--chunks KIB,KIB,...]
 * --window: remembered results in the dedupe window (100,000 is the default limit: a
 * busy cluster's steady state; 15.7 MB of snapshot).
 */
interface Args {
  window: number;
  rounds: number;
  every: number;
  /** Snapshot chunk sizes (KiB) to run `background` with, beside the default. */
  chunksKib: number[];
}

const config: ClusterConfig = { voters: [nodeId('n1')], learners: [] };
const RETAIN = 1_000;

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { window: 100_000, rounds: 3, every: 10_000, chunksKib: [] };
  const valid = (value: number) => Number.isSafeInteger(value) && value >= 1 && value <= 1_000_000;
  for (let i = 0; i < argv.length; i += 2) {
    const name = (argv[i] ?? '').replace(/^--/, '');
    const text = argv[i + 1] ?? '';
    const values = text.split(',').map(Number);
    const known = name === 'chunks' || name === 'window' || name === 'rounds' || name === 'every';
    if (!known || !values.every(valid) || (name !== 'chunks' && values.length !== 1)) {
      process.stderr.write(`bench-snapshot-stall: bad ${argv[i]} ${text}\n`);
      process.exit(2);
    }
    if (name === 'chunks') args.chunksKib = values;
    else args[name as 'window' | 'rounds' | 'every'] = values[0] as number;
  }
  return args;
}

/** A state machine whose dedupe window holds `window` results, as after a busy hour. */
function busyMachine(window: number): LockStateMachine {
  const machine = new LockStateMachine();
  machine.apply(logIndex(1), {
    type: 'OpenSession',
    ttlMs: 10_000,
    clientName: 'b',
    requestId: 'o',
  });
  const session = sessionId(1);
  for (let i = 0, index = 2; i < window / 2; i++) {
    const token = index;
    const lock = `bench/${i % 64}`;
    const acquire = { lock, sessionId: session, mode: 'exclusive' as const, waitMs: 0 };
    machine.apply(logIndex(index++), {
      type: 'Acquire',
      ...acquire,
      requestId: `a-${crypto.randomUUID()}`,
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    machine.apply(logIndex(index++), {
      type: 'Release',
      lock,
      sessionId: session,
      token: token as LogIndex,
      requestId: `r-${crypto.randomUUID()}`,
    } as never);
  }
  return machine;
}

function entryAt(index: number): Entry {
  return { kind: 'normal', index: logIndex(index), term: term(1), data: new Uint8Array(150) };
}

type Variant = 'inline' | 'background' | 'none';

interface Outcome {
  writeMaxMs: number;
  writeP99Ms: number;
  writeMeanMs: number;
  loopMaxMs: number;
  totalSeconds: number;
}

async function runVariant(
  variant: Variant,
  storage: LevelStorage,
  machine: LockStateMachine,
  args: Args,
): Promise<Outcome> {
  const snapshotter = new Snapshotter(
    {
      storage,
      appliedIndex: () => logIndex(storage.lastIndex()),
      installPending: () => false,
      config: () => config,
      captureState: () => machine.snapshot(),
      failed: (error) => {
        throw error;
      },
      snapshotted: () => {},
    },
    { snapshotEntriesThreshold: args.every, compactionRetainEntries: RETAIN },
  );
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const writesMs: number[] = [];
  // One snapshot's worth of writes, plus the compaction's tail.
  const writes = args.every + 2_000;
  for (let i = 0; i < writes; i++) {
    const started = performance.now();
    await storage.persist({ entries: [entryAt(storage.lastIndex() + 1)] });
    if (variant === 'inline') await inlineSnapshot(storage, machine, args);
    else if (variant === 'background') {
      snapshotter.maybeStart();
      await snapshotter.compactStep(1); // as the node: what the Ready appended, plus a slice
    }
    writesMs.push(performance.now() - started);
  }
  await snapshotter.stop();
  loop.disable();
  writesMs.sort((a, b) => a - b);
  const totalMs = writesMs.reduce((sum, ms) => sum + ms, 0);
  return {
    writeMaxMs: writesMs.at(-1) ?? Number.NaN,
    writeP99Ms: writesMs[Math.floor(writesMs.length * 0.99)] ?? Number.NaN,
    writeMeanMs: totalMs / writesMs.length,
    loopMaxMs: loop.max / 1e6,
    totalSeconds: totalMs / 1000,
  };
}

/** The node's maybeSnapshot before this change, as it was. */
async function inlineSnapshot(storage: LevelStorage, machine: LockStateMachine, args: Args) {
  const applied = storage.lastIndex();
  if (applied - storage.snapshot().metadata.index < args.every) return;
  await storage.createSnapshot(logIndex(applied), config, encodeLockSnapshot(machine.snapshot()));
  const compactTo = applied - RETAIN;
  if (compactTo > storage.firstIndex()) await storage.compact(logIndex(compactTo));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'dlm-snapshot-stall-'));
  try {
    const storage = await LevelStorage.open(join(dir, 'n1'), { bootstrap: config });
    // One database per chunk size, each its own setting, as each node has.
    const chunked = await Promise.all(
      args.chunksKib.map(async (kib) => ({
        name: `bg/${kib}KiB`,
        storage: await LevelStorage.open(join(dir, `chunks-${kib}`), {
          bootstrap: config,
          snapshotChunkBytes: kib * 1024,
        }),
      })),
    );
    const machine = busyMachine(args.window);
    const bytes = encodeLockSnapshot(machine.snapshot()).byteLength;
    process.stdout.write(
      `dedupe window ${args.window} results (snapshot ${(bytes / 1e6).toFixed(1)} MB), a snapshot every ${args.every} writes\n`,
    );
    process.stdout.write(
      'round  variant        write max   write p99  write mean   loop max (ms)   writes took (s)\n',
    );
    const variants = [
      ...(['inline', 'background', 'none'] as const).map((variant) => ({
        name: variant,
        variant,
        storage,
      })),
      ...chunked.map((each) => ({ ...each, variant: 'background' as const })),
    ];
    for (let round = 1; round <= args.rounds; round++) {
      for (const { name, variant, storage: store } of variants) {
        const outcome = await runVariant(variant, store, machine, args);
        const cells = [
          outcome.writeMaxMs,
          outcome.writeP99Ms,
          outcome.writeMeanMs,
          outcome.loopMaxMs,
        ];
        process.stdout.write(
          `${String(round).padEnd(6)} ${name.padEnd(14)} ${cells.map((ms) => ms.toFixed(2).padStart(9)).join('   ')}   ${outcome.totalSeconds.toFixed(2).padStart(12)}\n`,
        );
      }
    }
    await storage.close();
    for (const each of chunked) await each.storage.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
