/**
 * The resource side of fencing, for a resource kept in this process's memory (a cache,
 * an in-process store, a file this process alone writes). A lock holder passes its
 * fencing token with each write; the guard admits the write only if no later grant's
 * token has been seen for that resource, and remembers the highest token it admitted.
 * A holder that was paused past its lease (a GC pause, a stopped process) and writes
 * afterwards carries an older token than the holder after it, and is refused.
 *
 * The tokens of one lock strictly increase from grant to grant (proto/dlm.proto), and
 * one grant's holder may write any number of times, so a write is admitted when its
 * token is at least the highest seen: equal is the same grant. The comparison is of
 * uint64 values, not of strings ("9" is older than "10").
 *
 * The guard protects only what it sees: every write to the resource must go through
 * it, and its memory is the resource's. A resource outside this process (a database)
 * keeps the highest token next to its data and checks it in the same statement as the
 * write: examples/fenced-postgres. Nothing is ever forgotten, because forgetting a
 * resource's highest token would admit a stale holder again; it holds one entry per
 * resource written.
 *
 * Use one of the two ways per resource, not both at once: admit()/check() (for a write
 * applied before the next await) or run() (for a write that awaits). While a run()
 * write to a resource is queued or in flight, admit()/check() on it throw a
 * FenceMisuseError: they cannot wait for it, and a later grant admitted beside it would
 * have its write overwritten when the older awaiting write lands.
 */

/** A write under a token older than one the resource has already seen. */
export class StaleTokenError extends Error {
  override readonly name = 'StaleTokenError';

  constructor(
    readonly resource: string,
    /** The refused write's token. */
    readonly token: bigint,
    /** The highest token admitted for the resource: a later grant's. */
    readonly highestToken: bigint,
  ) {
    super(
      `${resource}: write under fencing token ${token} refused, token ${highestToken} ` +
        'was seen already (a later grant of the lock; this holder lost it)',
    );
  }
}

/** admit()/check() on a resource while run() writes to it: they cannot be ordered. */
export class FenceMisuseError extends Error {
  override readonly name = 'FenceMisuseError';

  constructor(readonly resource: string) {
    super(
      `${resource}: admit()/check() called while a run() write to it is queued or in ` +
        'flight; an awaiting older write could land on top of this one: send every write ' +
        'to a resource through run(), or none',
    );
  }
}

const UINT64_MAX = 2n ** 64n - 1n;

/** A resource's run() calls not yet settled, and the end of their queue. */
interface RunQueue {
  pending: number;
  tail: Promise<unknown>;
}

export class FenceGuard {
  private readonly highest = new Map<string, bigint>();
  /** Per resource, its queue of run() calls, while it has any. */
  private readonly queues = new Map<string, RunQueue>();

  /**
   * Check-and-advance: true, remembering the token, when `token` is at least the highest
   * seen for `resource`; false for a stale token, which changes nothing. Apply the write
   * before the next await, or use run() for a write that awaits. Throws a RangeError for
   * a token that is not a uint64 (a string of digits or a bigint; never a JS number,
   * which loses precision past 2^53), and a FenceMisuseError while run() writes to it.
   */
  admit(resource: string, token: string | bigint): boolean {
    const value = parseToken(token);
    if (this.queues.has(resource)) throw new FenceMisuseError(resource);
    return this.advance(resource, value);
  }

  /** admit(), throwing StaleTokenError for a stale token. */
  check(resource: string, token: string | bigint): void {
    const value = parseToken(token);
    if (this.queues.has(resource)) throw new FenceMisuseError(resource);
    this.advanceOrThrow(resource, value);
  }

  /** The highest token admitted for `resource`; undefined before its first write. */
  highestToken(resource: string): bigint | undefined {
    return this.highest.get(resource);
  }

  /**
   * Runs `write` if `token` is admitted when its turn comes; rejects with
   * StaleTokenError (without running it) if not. Writes to one resource run one at a
   * time in call order, so an admitted write that awaits finishes before a later
   * grant's write is admitted: it cannot land on top of the newer one.
   */
  run<T>(resource: string, token: string | bigint, write: () => T | Promise<T>): Promise<T> {
    let value: bigint;
    try {
      value = parseToken(token); // a malformed token fails the call now, not in its turn
    } catch (error) {
      return Promise.reject(error);
    }
    const queue = this.queues.get(resource) ?? { pending: 0, tail: Promise.resolve() };
    this.queues.set(resource, queue);
    queue.pending++;
    const turn = queue.tail.then(() => {
      this.advanceOrThrow(resource, value);
      return write();
    });
    // Settled only once the queue forgot it: the caller's next admit() after `await
    // run(...)` finds no write in flight.
    const settled = turn.finally(() => {
      queue.pending--;
      if (queue.pending === 0 && this.queues.get(resource) === queue) {
        this.queues.delete(resource);
      }
    });
    queue.tail = settled.then(
      () => undefined,
      () => undefined,
    );
    return settled;
  }

  private advance(resource: string, value: bigint): boolean {
    const highest = this.highest.get(resource);
    if (highest !== undefined && value < highest) return false;
    this.highest.set(resource, value);
    return true;
  }

  private advanceOrThrow(resource: string, value: bigint): void {
    if (this.advance(resource, value)) return;
    throw new StaleTokenError(resource, value, this.highest.get(resource) ?? 0n);
  }
}

/** A fencing token as dlm gives it (a uint64 as a decimal string) or as a bigint. */
function parseToken(token: string | bigint): bigint {
  if (typeof token === 'bigint') {
    if (token >= 0n && token <= UINT64_MAX) return token;
  } else if (typeof token === 'string' && /^\d{1,20}$/.test(token)) {
    const value = BigInt(token);
    if (value <= UINT64_MAX) return value;
  }
  throw new RangeError(
    `fencing token ${JSON.stringify(String(token))} (${typeof token}) is not a uint64 ` +
      `(a lock handle's token: a string of digits such as "42", or a bigint)`,
  );
}
