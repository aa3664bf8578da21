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

const UINT64_MAX = 2n ** 64n - 1n;

export class FenceGuard {
  private readonly highest = new Map<string, bigint>();
  /** Per resource, the end of the queue of run() calls, while it has any. */
  private readonly queues = new Map<string, Promise<unknown>>();

  /**
   * Check-and-advance: true, remembering the token, when `token` is at least the highest
   * seen for `resource`; false for a stale token, which changes nothing. Apply the write
   * before the next await, or use run() for a write that awaits.
   */
  admit(resource: string, token: string | bigint): boolean {
    const value = parseToken(token);
    const highest = this.highest.get(resource);
    if (highest !== undefined && value < highest) return false;
    this.highest.set(resource, value);
    return true;
  }

  /** admit(), throwing StaleTokenError for a stale token. */
  check(resource: string, token: string | bigint): void {
    if (this.admit(resource, token)) return;
    throw new StaleTokenError(resource, parseToken(token), this.highest.get(resource) ?? 0n);
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
    parseToken(token); // a malformed token fails the call now, not in its turn
    const previous = this.queues.get(resource) ?? Promise.resolve();
    const turn = previous.then(() => {
      this.check(resource, token);
      return write();
    });
    const end = turn.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(resource, end);
    void end.then(() => {
      if (this.queues.get(resource) === end) this.queues.delete(resource);
    });
    return turn;
  }
}

/** A fencing token as dlm gives it (a uint64 as a decimal string) or as a bigint. */
function parseToken(token: string | bigint): bigint {
  if (typeof token === 'bigint') {
    if (token >= 0n && token <= UINT64_MAX) return token;
  } else if (/^\d{1,20}$/.test(token)) {
    const value = BigInt(token);
    if (value <= UINT64_MAX) return value;
  }
  throw new RangeError(
    `fencing token ${JSON.stringify(String(token))} is not a uint64 (a lock handle's token, e.g. "42")`,
  );
}
