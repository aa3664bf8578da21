import { SafetyViolation } from './checker.ts';

/**
 * A linearizability checker for one read/write register whose writes all write
 * distinct values, as the simulator's are (each write's value is its own id). With
 * distinct values every read names the one write it observed, and the problem is
 * polynomial: no search over orders is needed (Gibbons & Korach, "Testing shared
 * memories", SIAM J. Comput. 1997; the zone form is from Golab, Li & Shah,
 * "Analyzing consistency properties for fun and profit", PODC 2011).
 *
 * Times are history stamps: one counter, advanced at every invocation and response in
 * the order the simulator performs them, so "a responded before b was invoked" is
 * exactly "stamp(a.response) < stamp(b.invocation)" and no two stamps tie.
 *
 * Take a write w with the reads that returned its value: its cluster. Any
 * linearization puts w before all its reads, so w takes effect no later than the
 * cluster's earliest response, and the register still holds w at its last read, which
 * comes no earlier than the cluster's latest invocation. If that latest invocation
 * comes after the earliest response, the register must hold w for the whole interval
 * between them: the cluster's forward zone. Otherwise the cluster can take effect
 * entirely inside [latest invocation, earliest response]: its backward zone. The
 * history is linearizable exactly when
 *   1. no read returns a value before its write was invoked, or a value never written;
 *   2. no two forward zones overlap (the register would hold two values at once); and
 *   3. no backward zone lies inside a forward zone (that cluster's write would have to
 *      take effect while the register must keep another value).
 * Necessity is the argument above; sufficiency is the theorem, and
 * `linearizability.test.ts` compares this check with an exhaustive search on many
 * small random histories.
 *
 * Pending operations: a read with no response is dropped (it changed nothing); a
 * write with no response counts as responding at +infinity if some read returned its
 * value (it took effect), and is dropped otherwise (it may never take effect). Both are
 * the least constraining completions, so nothing correct is reported.
 */
export interface RegisterOp {
  readonly kind: 'write' | 'read';
  /** The value written or read; null is the register's initial value. */
  readonly value: string | null;
  readonly invokedAt: number;
  /** Null while pending. */
  readonly respondedAt: number | null;
  /** What to print when this operation is part of a violation. */
  readonly label: string;
}

interface Zone {
  readonly value: string | null;
  readonly low: number;
  readonly high: number;
}

/** Returns a description of the first violation found, or null if the history is linearizable. */
export function registerViolation(ops: readonly RegisterOp[]): string | null {
  const writes = new Map<string | null, RegisterOp>();
  writes.set(null, { kind: 'write', value: null, invokedAt: 0, respondedAt: 0, label: 'initial' });
  for (const op of ops) {
    if (op.kind !== 'write') continue;
    if (op.value === null || writes.has(op.value))
      return `write ${op.label}: values must be distinct and not null`;
    writes.set(op.value, op);
  }
  const clusters = new Map<string | null, { low: number; high: number }>();
  for (const op of ops) {
    if (op.kind !== 'read' || op.respondedAt === null) continue;
    const write = writes.get(op.value);
    if (write === undefined) return `${op.label} returned ${op.value}, which was never written`;
    if (op.respondedAt < write.invokedAt)
      return `${op.label} returned ${op.value} before ${write.label} was invoked`;
    const cluster = clusters.get(op.value) ?? clusterOf(write);
    clusters.set(op.value, {
      low: Math.min(cluster.low, op.respondedAt),
      high: Math.max(cluster.high, op.invokedAt),
    });
  }
  for (const [value, write] of writes) {
    if (!clusters.has(value) && write.respondedAt !== null) clusters.set(value, clusterOf(write));
  }
  const forward: Zone[] = [];
  const backward: Zone[] = [];
  for (const [value, { low, high }] of clusters) {
    // A forward zone runs from the earliest response to the latest invocation.
    if (high > low) forward.push({ value, low, high });
    else backward.push({ value, low: high, high: low });
  }
  forward.sort((a, b) => a.low - b.low);
  for (let i = 1; i < forward.length; i++) {
    const previous = forward[i - 1] as Zone;
    const zone = forward[i] as Zone;
    if (zone.low < previous.high) {
      return `the register must hold ${describe(writes, previous.value)} and ${describe(writes, zone.value)} at once (forward zones [${previous.low}, ${previous.high}] and [${zone.low}, ${zone.high}])`;
    }
  }
  for (const zone of backward) {
    const around = lastStartingBefore(forward, zone.low);
    if (around !== undefined && zone.high < around.high) {
      return `${describe(writes, zone.value)} must take effect within [${zone.low}, ${zone.high}], while the register must hold ${describe(writes, around.value)} over [${around.low}, ${around.high}]`;
    }
  }
  return null;
}

/** The write alone; an unanswered write that some read observed responds at +infinity. */
function clusterOf(write: RegisterOp): { low: number; high: number } {
  return { low: write.respondedAt ?? Number.POSITIVE_INFINITY, high: write.invokedAt };
}

/** The forward zone with the greatest start below `time` (forward zones are disjoint by now). */
function lastStartingBefore(forward: readonly Zone[], time: number): Zone | undefined {
  let low = 0;
  let high = forward.length - 1;
  let found: Zone | undefined;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const zone = forward[middle] as Zone;
    if (zone.low < time) {
      found = zone;
      low = middle + 1;
    } else high = middle - 1;
  }
  return found;
}

function describe(writes: ReadonlyMap<string | null, RegisterOp>, value: string | null): string {
  const write = writes.get(value);
  return value === null ? 'the initial value' : `${value} (${write?.label ?? '?'})`;
}

/** Records the register history of a simulation run with stamps, and checks it. */
export class RegisterHistory {
  private stamp = 0;
  private readonly writes = new Map<
    string,
    { invokedAt: number; respondedAt: number | null; label: string }
  >();
  private readonly reads = new Map<string, { invokedAt: number; label: string }>();
  private readonly completed: RegisterOp[] = [];

  private next(): number {
    this.stamp++;
    return this.stamp;
  }

  writeInvoked(value: string, label: string): void {
    this.writes.set(value, { invokedAt: this.next(), respondedAt: null, label });
  }

  /** A write responds when it is first applied anywhere: the earliest a client could hear of it. */
  writeApplied(value: string): void {
    const write = this.writes.get(value);
    if (write === undefined || write.respondedAt !== null) return;
    write.respondedAt = this.next();
  }

  readInvoked(id: string, label: string): void {
    this.reads.set(id, { invokedAt: this.next(), label });
  }

  readReturned(id: string, value: string | null, detail: string): void {
    const read = this.reads.get(id);
    if (read === undefined) return;
    this.reads.delete(id);
    this.completed.push({
      kind: 'read',
      value,
      invokedAt: read.invokedAt,
      respondedAt: this.next(),
      label: `${read.label} ${detail}`,
    });
  }

  get readsReturned(): number {
    return this.completed.length;
  }

  /** Throws a SafetyViolation if the history so far is not linearizable. */
  check(): void {
    const ops: RegisterOp[] = [...this.completed];
    for (const [value, write] of this.writes) ops.push({ kind: 'write', value, ...write });
    const problem = registerViolation(ops);
    if (problem !== null) throw new SafetyViolation(`Linearizable register: ${problem}`);
  }
}
