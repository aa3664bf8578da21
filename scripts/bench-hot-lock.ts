/**
 * What one hand-off of a hot lock costs in the pure state machine (plus the timers every
 * node feeds), by number of waiters queued: the holder releases (the entry grants the
 * head waiter) and queues again at the tail. A hand-off should cost the same with 1 or
 * 10,000 waiters. Prints numbers; it is not a test.
 *
 *   node --import tsx scripts/bench-hot-lock.ts [--handoffs 20000] [--rounds 3]
 *   (BENCH_WAITERS=64,10000 picks the queue lengths; default 1,16,64,1024,10000)
 */
import { type LockCommand, LockStateMachine, LockTimers } from '../src/lock/index.ts';
import { type FencingToken, type LogIndex, logIndex, type SessionId } from '../src/util/ids.ts';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const value = at === -1 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) {
    process.stderr.write(`${name} must be a positive whole number\n`);
    process.exit(2);
  }
  return value;
}

const HANDOFFS = flag('--handoffs', 20_000);
const ROUNDS = flag('--rounds', 3);
const WAITERS = (process.env.BENCH_WAITERS ?? '1,16,64,1024,10000').split(',').map(Number);
const LOCK = 'hot';

class Cluster {
  readonly machine = new LockStateMachine({ sessionsMax: 20_000, waitersPerLockMax: 20_000 });
  readonly timers = new LockTimers({ reproposeIntervalMs: 1_000, dueBatchMax: 256 });
  private index = 0;
  private requests = 0;

  apply(command: LockCommand) {
    this.index += 1;
    const output = this.machine.apply(logIndex(this.index), command);
    this.timers.applied(logIndex(this.index), output.events, this.index);
    return output;
  }

  open(): SessionId {
    const output = this.apply({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'bench',
      requestId: `open-${this.index}`,
    });
    if (output.result.type !== 'SessionOpened') throw new Error(JSON.stringify(output.result));
    return output.result.sessionId;
  }

  acquire(sessionId: SessionId) {
    this.requests += 1;
    return this.apply({
      type: 'Acquire',
      lock: LOCK,
      sessionId,
      mode: 'exclusive',
      waitMs: 60_000,
      requestId: `r${this.requests}`,
      owner: '',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
  }

  release(sessionId: SessionId, token: FencingToken) {
    this.requests += 1;
    return this.apply({
      type: 'Release',
      lock: LOCK,
      sessionId,
      token,
      requestId: `r${this.requests}`,
    });
  }
}

/** Microseconds per hand-off (release + re-acquire) with `waiters` queued behind the holder. */
function measure(waiters: number): number {
  const cluster = new Cluster();
  const sessions: SessionId[] = [];
  for (let i = 0; i <= waiters; i++) sessions.push(cluster.open());
  let holder = sessions[0] as SessionId;
  let token = 0 as FencingToken;
  for (const id of sessions) {
    const { result } = cluster.acquire(id);
    if (result.type === 'Acquired') token = result.token;
  }
  let started = 0;
  const warmup = Math.min(2_000, HANDOFFS);
  for (let i = 0; i < warmup + HANDOFFS; i++) {
    if (i === warmup) started = performance.now();
    const { events } = cluster.release(holder, token);
    const granted = events.find((event) => event.type === 'granted');
    if (granted === undefined || granted.type !== 'granted') throw new Error('no hand-off');
    const previous = holder;
    holder = granted.holder.sessionId;
    token = granted.holder.token;
    cluster.acquire(previous);
  }
  return ((performance.now() - started) * 1_000) / HANDOFFS;
}

void (logIndex(1) satisfies LogIndex);
for (let round = 1; round <= ROUNDS; round++) {
  const cells = WAITERS.map((waiters) => `${waiters} waiters ${measure(waiters).toFixed(2)} µs`);
  process.stdout.write(`round ${round}: ${cells.join(' | ')}\n`);
}
