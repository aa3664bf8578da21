import { performance } from 'node:perf_hooks';

/**
 * Wing & Gong's search with Lowe's refinements, as Porcupine runs it: the ops' calls and
 * returns sit in one time-ordered doubly linked list; the search linearizes a call that
 * comes before the first remaining return, lifts it (call and return) out of the list,
 * and starts again from the front; meeting a return means its op should already have
 * been linearized, so it backtracks. A cache of (set of ops linearized, model state)
 * pairs already explored cuts off every path that reaches a configuration a second way,
 * which is what makes the search usable on long histories.
 */
export interface SearchModel<Op, State> {
  readonly initial: State;
  step(state: State, op: Op): State | null;
  /** Equal for equal states, different otherwise. */
  key(state: State): string;
  /**
   * Whether `op`, which `step` just took from `state` to `state` itself, leaves every
   * state reachable from `state` unchanged too (a read, or an op of a session that is
   * gone for good). Such an op is linearized where the search first finds it fits and
   * never tried anywhere else: moving it there from a later place in any linearization
   * changes no state, so if none exists with it here, none exists. Without this, each
   * of them that stays open (a refusal that waited 1 s, an unanswered acquire whose
   * session closed) doubles the configurations a failing search must rule out.
   */
  inert?(state: State, op: Op): boolean;
}

export interface SearchOp {
  readonly invokeMs: number;
  readonly completeMs: number | null;
}

export interface SearchBudget {
  readonly statesMax: number;
  /** performance.now() after which the search gives up. */
  readonly deadlineMs: number;
}

export interface SearchStats {
  /** Model steps tried. */
  readonly statesExplored: number;
  /** Configurations skipped because they were explored before. */
  readonly cacheHits: number;
  readonly elapsedMs: number;
}

export type SearchResult =
  | { readonly verdict: 'ok'; readonly order: readonly number[]; readonly stats: SearchStats }
  | {
      readonly verdict: 'violation' | 'unknown';
      /** The longest sequence of ops (indexes into the input) found linearizable. */
      readonly longestPrefix: readonly number[];
      readonly stats: SearchStats;
    };

/** Nodes 0..n-1 are calls, n..2n-1 returns; node 2n is the list's head. */
class EventList {
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly head: number;

  constructor(ops: readonly SearchOp[]) {
    const n = ops.length;
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1).fill(-1);
    this.prev = new Int32Array(2 * n + 1).fill(-1);
    const order = timeOrder(ops);
    let last = this.head;
    for (const node of order) {
      this.next[last] = node;
      this.prev[node] = last;
      last = node;
    }
  }

  /** Takes op `i`'s call and return out of the list. */
  lift(i: number, n: number): void {
    this.unlink(i);
    this.unlink(i + n);
  }

  /** Puts them back, in the reverse order of lift (the removed nodes kept their links). */
  unlift(i: number, n: number): void {
    this.relink(i + n);
    this.relink(i);
  }

  private unlink(node: number): void {
    const before = this.prev[node] as number;
    const after = this.next[node] as number;
    this.next[before] = after;
    if (after !== -1) this.prev[after] = before;
  }

  private relink(node: number): void {
    const before = this.prev[node] as number;
    const after = this.next[node] as number;
    this.next[before] = node;
    if (after !== -1) this.prev[after] = node;
  }
}

/**
 * Calls and returns by time. At equal times calls come first: touching intervals count
 * as concurrent, the conservative reading. An unanswered op returns at +∞.
 */
function timeOrder(ops: readonly SearchOp[]): number[] {
  const n = ops.length;
  const events: { node: number; timeMs: number; isReturn: number }[] = [];
  ops.forEach((op, i) => {
    events.push({ node: i, timeMs: op.invokeMs, isReturn: 0 });
    events.push({ node: i + n, timeMs: op.completeMs ?? Number.POSITIVE_INFINITY, isReturn: 1 });
  });
  events.sort((a, b) => a.timeMs - b.timeMs || a.isReturn - b.isReturn || a.node - b.node);
  return events.map((event) => event.node);
}

/** Explored configurations: bitset of linearized ops plus the model state's key. */
class Cache {
  private readonly seen = new Set<string>();

  /** Adds the configuration; false if it was there already. */
  add(bits: Uint32Array, stateKey: string): boolean {
    const key = `${bitsKey(bits)}/${stateKey}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}

function bitsKey(bits: Uint32Array): string {
  let key = '';
  for (const word of bits) key += `${word.toString(36)},`;
  return key;
}

/** Not a node: tells the loop to back out of the current configuration. */
const BACK_OUT = -2;

interface Frame<State> {
  readonly op: number;
  readonly stateBefore: State;
  /** Placed without a choice (SearchModel.inert): backing out of it backs out further. */
  readonly forced: boolean;
}

export function searchLinearization<Op extends SearchOp, State>(
  ops: readonly Op[],
  model: SearchModel<Op, State>,
  budget: SearchBudget,
): SearchResult {
  const startMs = performance.now();
  const n = ops.length;
  const list = new EventList(ops);
  const bits = new Uint32Array(Math.ceil(n / 32) + 1);
  const cache = new Cache();
  const stack: Frame<State>[] = [];
  let state = model.initial;
  let statesExplored = 0;
  let cacheHits = 0;
  let longestPrefix: readonly number[] = [];
  // Copied only when the search is about to back out of its deepest point so far.
  const keepIfLongest = (): void => {
    if (stack.length > longestPrefix.length) longestPrefix = stack.map((f) => f.op);
  };
  const stats = (): SearchStats => ({
    statesExplored,
    cacheHits,
    elapsedMs: performance.now() - startMs,
  });

  const undo = (frame: Frame<State>): void => {
    state = frame.stateBefore;
    setBit(bits, frame.op, false);
    list.unlift(frame.op, n);
  };

  let entry = list.next[list.head] as number;
  while (list.next[list.head] !== -1) {
    if (outOfBudget(statesExplored, budget)) {
      keepIfLongest();
      return { verdict: 'unknown', longestPrefix, stats: stats() };
    }
    if (entry >= 0 && entry < n) {
      const op = ops[entry] as Op;
      statesExplored++;
      const next = model.step(state, op);
      if (next !== null) {
        const forced = next === state && model.inert?.(state, op) === true;
        setBit(bits, entry, true);
        if (cache.add(bits, model.key(next))) {
          stack.push({ op: entry, stateBefore: state, forced });
          state = next;
          list.lift(entry, n);
          entry = list.next[list.head] as number;
          continue;
        }
        cacheHits++;
        setBit(bits, entry, false);
        // Explored before without success; with no choice in placing it, nothing else
        // from here can succeed either.
        if (forced) {
          entry = BACK_OUT;
          continue;
        }
      }
      entry = list.next[entry] as number;
    } else {
      // A return whose op is not linearized yet, or a forced op that failed before.
      keepIfLongest();
      let frame = stack.pop();
      while (frame?.forced === true) {
        undo(frame);
        frame = stack.pop();
      }
      if (frame === undefined) return { verdict: 'violation', longestPrefix, stats: stats() };
      undo(frame);
      entry = list.next[frame.op] as number;
    }
  }
  return { verdict: 'ok', order: stack.map((f) => f.op), stats: stats() };
}

/** Checks the clock only every 1024 steps: performance.now() costs more than a step. */
function outOfBudget(statesExplored: number, budget: SearchBudget): boolean {
  if (statesExplored >= budget.statesMax) return true;
  return (statesExplored & 1023) === 0 && performance.now() > budget.deadlineMs;
}

function setBit(bits: Uint32Array, i: number, on: boolean): void {
  const word = i >>> 5;
  const mask = 1 << (i & 31);
  bits[word] = on ? (bits[word] as number) | mask : (bits[word] as number) & ~mask;
}
