import { ApiError } from '../errors.ts';

/** Refusals are remembered in this many slices of the window, so an identity costs O(1). */
const WINDOW_SLICES = 10;

interface Slice {
  /** When the refusals of this slice stop counting (the window after the slice ends). */
  readonly endsMs: number;
  count: number;
}

interface Account {
  inFlight: number;
  readonly slices: Slice[];
  refused: number;
  /**
   * Whether a write was turned away for refusals since the identity was last admitted,
   * so that each such spell is reported once.
   */
  turnedAway: boolean;
}

/** What admitting a write gave: its settle, or the refusal to answer it with. */
export type Admission =
  | { readonly admitted: true; settle(refused: boolean): void }
  | { readonly admitted: false; readonly error: ApiError; readonly firstTurnedAway: boolean };

/**
 * Bounds the log entries one identity can make the cluster write only to have them
 * refused when they apply (issue 15): a session that is not its own and that this node
 * has not applied yet, an unknown session, a stale token, a limit reached. Without a
 * bound a tenant with `lock` on any name could fill the log with such entries.
 *
 * Per node and per identity, the writes in flight plus those refused when applied in the
 * last `windowMs` are at most `max`; past it a write is refused RESOURCE_EXHAUSTED before
 * it is proposed. A write holds its unit while in flight, so a burst cannot overshoot,
 * and gives it back at once unless it was refused; a refused one keeps it for the
 * window. A write that keeps or gives back what the identity has (`exempt`, judged by
 * the caller) may use a second `max`, so that a tenant held back keeps its sessions and
 * can release: the judgement is this node's, and a session can end before the entry
 * applies, so those are held to a bound too. So whatever the caller does, this node
 * proposes at most 2 * `max` such entries per identity per window; a write whose
 * outcome was unknown (UNAVAILABLE, a timeout) gives its unit back, and is charged if
 * it turns out to have been refused.
 *
 * Refusals are counted in slices of a tenth of the window, so one may count up to a
 * tenth of the window longer than `windowMs`, never shorter.
 */
export class RefusalBudget {
  private readonly accounts = new Map<string, Account>();
  private readonly sliceMs: number;

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.sliceMs = Math.max(1, Math.ceil(windowMs / WINDOW_SLICES));
  }

  /**
   * Admits one write of `identity`, or says why not. `exempt` (asked only when the first
   * `max` units are taken) says whether the write keeps or gives back what the identity
   * has (see client-write.ts), which may take a unit of the second `max`.
   */
  admit(identity: string, exempt: () => boolean): Admission {
    this.sweepOldest();
    const account = this.account(identity);
    this.expire(account);
    const used = account.inFlight + account.refused;
    if (used < this.max || (used < 2 * this.max && exempt())) {
      account.inFlight++;
      account.turnedAway = false;
      return { admitted: true, settle: this.settleOnce(identity, account) };
    }
    // Writes in flight alone are plain backpressure; refusals are worth an operator's look.
    const firstTurnedAway = account.refused > 0 && !account.turnedAway;
    if (account.refused > 0) account.turnedAway = true;
    return { admitted: false, error: this.refusal(identity, account), firstTurnedAway };
  }

  /** A write that failed with its outcome unknown applied after all, and was refused. */
  charge(identity: string): void {
    const account = this.account(identity);
    this.expire(account);
    this.addRefusal(account);
  }

  /** Writes in flight and refusals counting now, for `identity` (for tests). */
  spent(identity: string): number {
    const account = this.accounts.get(identity);
    if (account === undefined) return 0;
    this.expire(account);
    return account.inFlight + account.refused;
  }

  /** Identities remembered: those with writes in flight or refusals counting (for tests). */
  get size(): number {
    return this.accounts.size;
  }

  private settleOnce(identity: string, account: Account): (refused: boolean) => void {
    let open = true;
    return (refused) => {
      if (!open) return;
      open = false;
      account.inFlight--;
      this.expire(account);
      if (refused) this.addRefusal(account);
      this.forgetIfIdle(identity, account);
    };
  }

  private refusal(identity: string, account: Account): ApiError {
    // Units held in flight come back within a commit: the usual backpressure hint. Units
    // held by refusals come back when the oldest slice leaves the window.
    const oldest = account.slices[0];
    const retryAfterMs =
      account.inFlight > 0 || oldest === undefined
        ? null
        : Math.max(1, Math.ceil(oldest.endsMs - this.nowMs()));
    return new ApiError(
      'RESOURCE_EXHAUSTED',
      `auth.refusedWritesPerIdentityMax (${this.max}) reached for identity ${JSON.stringify(identity)}: ${account.inFlight} writes in flight and ${account.refused} refused when applied in the last auth.refusedWritesWindowMs (${this.windowMs}) on this node`,
      null,
      retryAfterMs,
    );
  }

  /** `identity`'s account, moved to the back: the map's front is the longest untouched. */
  private account(identity: string): Account {
    const account = this.accounts.get(identity) ?? {
      inFlight: 0,
      slices: [],
      refused: 0,
      turnedAway: false,
    };
    this.accounts.delete(identity);
    this.accounts.set(identity, account);
    return account;
  }

  /**
   * Refusals leave the window with nothing to tell the account: each admission looks
   * at the longest untouched account, so idle ones are forgotten as others call.
   */
  private sweepOldest(): void {
    const oldest = this.accounts.entries().next();
    if (oldest.done === true) return;
    const [identity, account] = oldest.value;
    this.expire(account);
    this.forgetIfIdle(identity, account);
  }

  private addRefusal(account: Account): void {
    const endsMs = (Math.floor(this.nowMs() / this.sliceMs) + 1) * this.sliceMs + this.windowMs;
    const last = account.slices.at(-1);
    if (last !== undefined && last.endsMs === endsMs) last.count++;
    else account.slices.push({ endsMs, count: 1 });
    account.refused++;
  }

  private expire(account: Account): void {
    const nowMs = this.nowMs();
    let oldest = account.slices[0];
    while (oldest !== undefined && oldest.endsMs <= nowMs) {
      account.refused -= oldest.count;
      account.slices.shift();
      oldest = account.slices[0];
    }
  }

  private forgetIfIdle(identity: string, account: Account): void {
    if (account.inFlight === 0 && account.refused === 0) {
      this.accounts.delete(identity);
    }
  }
}
