import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LockStateMachine } from '../../lock/index.ts';
import { decodeLockSnapshot, encodeLockSnapshot } from '../../node/entry-codec.ts';
import { LevelStorage } from '../../storage/index.ts';

/**
 * The locks cell's look at a stopped node's LevelDB: how big its newest snapshot is and
 * what it costs. dlm has no snapshot metric or log line, so the costs are measured here,
 * in the bench's process, with the node's own code: loading the database (what a
 * restart reads), decoding and restoring the snapshot (what a restart or an
 * InstallSnapshot does), and snapshot() + encode of that state (the CPU a node spends
 * on its event loop to take one; the synced LevelDB put comes on top).
 */
export interface SnapshotFigures {
  readonly index: number;
  readonly bytes: number;
  readonly locks: number;
  readonly sessions: number;
  /** Remembered request results (the dedupe window), part of every snapshot. */
  readonly dedupeEntries: number;
  readonly dataDirBytes: number;
  readonly storageLoadMs: number;
  readonly decodeMs: number;
  readonly restoreMs: number;
  readonly takeMs: number;
}

/** Reads the node's data dir; the node must not be running (LevelDB holds a lock). */
export async function inspectSnapshot(dataDir: string): Promise<SnapshotFigures> {
  const dataDirBytes = directoryBytes(dataDir);
  let startMs = performance.now();
  const storage = await LevelStorage.open(dataDir);
  const storageLoadMs = performance.now() - startMs;
  try {
    const snapshot = storage.snapshot();
    if (snapshot.data.byteLength === 0) return noSnapshot(dataDirBytes, storageLoadMs);
    startMs = performance.now();
    const decoded = decodeLockSnapshot(snapshot.data);
    const decodeMs = performance.now() - startMs;
    const machine = new LockStateMachine();
    startMs = performance.now();
    machine.restore(decoded);
    const restoreMs = performance.now() - startMs;
    startMs = performance.now();
    const encoded = encodeLockSnapshot(machine.snapshot());
    const takeMs = performance.now() - startMs;
    return {
      index: Number(snapshot.metadata.index),
      bytes: snapshot.data.byteLength,
      locks: machine.lockCount,
      sessions: machine.sessionCount,
      dedupeEntries: decoded.dedupe.length,
      dataDirBytes,
      storageLoadMs,
      decodeMs,
      restoreMs,
      takeMs: encoded.byteLength > 0 ? takeMs : Number.NaN,
    };
  } finally {
    await storage.close();
  }
}

/** The node has taken no snapshot yet (fewer entries than runtime.snapshotEntriesThreshold). */
function noSnapshot(dataDirBytes: number, storageLoadMs: number): SnapshotFigures {
  const none = Number.NaN;
  return {
    index: 0,
    bytes: 0,
    locks: 0,
    sessions: 0,
    dedupeEntries: 0,
    dataDirBytes,
    storageLoadMs,
    decodeMs: none,
    restoreMs: none,
    takeMs: none,
  };
}

function directoryBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? directoryBytes(path) : statSync(path).size;
  }
  return total;
}
