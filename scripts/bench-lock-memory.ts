/**
 * The lock state machine's memory at 100,000 held locks, in one process, step by step
 * (issue 12): filled through the node's entry codec as a node applies them, its
 * snapshot captured, encoded, decoded and restored (as a node does). Each
 * step is read after two full GCs (run with --expose-gc), so heapUsed is live heap.
 *
 *   node --expose-gc --import tsx scripts/bench-lock-memory.ts [locks] [dedupeWindowMax]
 */
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import type { LockCommand, LockSnapshot } from '../src/lock/index.ts';
import { LockStateMachine } from '../src/lock/index.ts';
import {
  decodeEntry,
  decodeLockSnapshot,
  encodeEntry,
  encodeLockSnapshotInSlices,
} from '../src/node/entry-codec.ts';
import type { SessionId } from '../src/util/ids.ts';
import { logIndex } from '../src/util/ids.ts';

const gc = (globalThis as { gc?: () => void }).gc;
function mb(n: number) {
  return (n / 2 ** 20).toFixed(1);
}
function report(phase: string) {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  const smaps = readFileSync('/proc/self/smaps_rollup', 'utf8');
  const anon = /Anonymous:\s+(\d+)/.exec(smaps)?.[1];
  console.log(
    `${phase}: rss ${mb(m.rss)} heapUsed ${mb(m.heapUsed)} heapTotal ${mb(m.heapTotal)} external ${mb(m.external)} arrayBuffers ${mb(m.arrayBuffers)} committed ${mb(h.total_physical_size)} anon ${(Number(anon) / 1024).toFixed(1)}`,
  );
}
const locks = Number(process.argv[2] ?? 100000);
const dedupeMax = Number(process.argv[3] ?? 100000);
report('start');
const machine = new LockStateMachine({
  locksMax: locks,
  sessionsMax: 1000,
  dedupeWindowMax: dedupeMax,
});
let index = 1;
const sessions: SessionId[] = [];
for (let i = 0; i < 200; i++) {
  const out = machine.apply(logIndex(index), {
    type: 'OpenSession',
    ttlMs: 60000,
    clientName: `c${i}`,
    requestId: `open-${i}`,
  } as LockCommand);
  sessions.push((out.result as { sessionId: SessionId }).sessionId);
  index++;
}
for (let i = 0; i < locks; i++) {
  const cmd = {
    type: 'Acquire',
    lock: `scale/locks-w${i % 2}-${i}`,
    sessionId: sessions[i % 200],
    mode: 'exclusive',
    waitMs: 0,
    requestId: `r-${i}-abcdefabcdef`,
    owner: '',
    maxHoldMs: 0,
    lockDelayMs: 0,
  } as unknown as LockCommand;
  const payload = decodeEntry(
    encodeEntry({
      proposalId: `n1/f0ed0c4da0b/${i}`,
      command: { ...cmd, owner: `host-${i}` } as LockCommand,
    }),
  );
  const out = machine.apply(logIndex(index++), payload.command, payload.proposalId);
  if (i === 0) console.log(JSON.stringify(out.result).slice(0, 200));
}
console.log('locks', machine.lockCount, 'remembered', machine.rememberedCount);
report('filled');
const state = machine.snapshot();
report('captured');
const encoded = await encodeLockSnapshotInSlices(state, async () => {});
console.log('snapshot bytes', mb(encoded.byteLength));
report('encoded (state+bytes alive)');
let decoded: LockSnapshot | null = decodeLockSnapshot(encoded);
report('decoded whole (state, bytes, decoded alive)');
const rules = { locksMax: locks, sessionsMax: 1000, dedupeWindowMax: dedupeMax };
const whole = new LockStateMachine(rules);
whole.restore(decoded);
decoded = null;
report('restored (as a node does), the decode dropped');
void state;
void machine;
void whole;
