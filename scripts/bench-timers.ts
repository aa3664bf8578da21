/**
 * What one leader tick costs in LockTimers.due, by number of live deadlines, against a
 * scan of every deadline (what due() did before it kept a heap). Prints numbers; it is
 * not a test.
 *
 *   node --import tsx scripts/bench-timers.ts [--sessions 100000] [--ticks 2000]
 */
import { type LockCommand, LockTimers } from '../src/lock/index.ts';
import { logIndex, sessionId } from '../src/util/ids.ts';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const value = at === -1 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) {
    process.stderr.write(`${name} must be a positive whole number\n`);
    process.exit(2);
  }
  return value;
}

const SESSIONS = flag('--sessions', 100_000);
const TICKS = flag('--ticks', 2_000);
const TICK_MS = 20;
const TTL_MS = 60_000;

function scanDue(deadlines: Map<number, number>, nowMs: number): LockCommand[] {
  const commands: LockCommand[] = [];
  for (const [id, dueAtMs] of deadlines) {
    if (dueAtMs > nowMs) continue;
    commands.push({
      type: 'ExpireSession',
      sessionId: sessionId(id),
      lastRefreshIndex: logIndex(1),
    });
  }
  return commands;
}

for (const size of [1_000, 10_000, SESSIONS]) {
  const timers = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 256 });
  const scan = new Map<number, number>();
  // TTLs spread so that a few sessions fall due over the ticks measured.
  for (let i = 1; i <= size; i++) {
    const ttlMs = TTL_MS + ((i * 7919) % (TTL_MS * 10));
    timers.applied(
      logIndex(i + 1),
      [{ type: 'sessionRefreshed', sessionId: sessionId(i), ttlMs }],
      0,
    );
    scan.set(i, ttlMs);
  }
  let heapMs = 0;
  let scanMs = 0;
  let returned = 0;
  for (let tick = 0; tick < TICKS; tick++) {
    const nowMs = TTL_MS + tick * TICK_MS;
    let startedMs = performance.now();
    returned += timers.due(nowMs).length;
    heapMs += performance.now() - startedMs;
    startedMs = performance.now();
    scanDue(scan, nowMs);
    scanMs += performance.now() - startedMs;
  }
  console.log(
    `${String(size).padStart(7)} deadlines: heap ${((heapMs / TICKS) * 1_000).toFixed(1)} µs/tick, scan ${((scanMs / TICKS) * 1_000).toFixed(1)} µs/tick (${(scanMs / heapMs).toFixed(0)}x); ${returned} commands returned over ${TICKS} ticks`,
  );
}
