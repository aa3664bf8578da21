import { assert } from '../util/assert.ts';
import type { FencingToken, LogIndex, SessionId } from '../util/ids.ts';
import { MinHeap } from '../util/min-heap.ts';
import type { LockStateMachine } from './state-machine.ts';
import type { LockCommand, LockEvent } from './types.ts';

/**
 * Clocks propose, the log decides. Every node feeds this helper the events of each
 * entry it applies, with the time it applied them on its own monotonic clock. Only the
 * leader asks it what is `due` and proposes those commands; each is guarded, so a
 * stale one is a no-op when applied.
 *
 * Because a node applies an entry after the entry was created, every deadline here is
 * measured from a moment at or after the real event: a leader never expires a session
 * early, and after a leader change the new leader's deadlines are late by at most its
 * apply lag. The helper reads no clock itself; the host passes `nowMs`.
 */
export interface LockTimersOptions {
  /** A due command not yet applied is proposed again after this long. */
  readonly reproposeIntervalMs: number;
  /** At most this many commands come out of one `due` call. */
  readonly dueBatchMax: number;
}

interface Deadline {
  readonly key: string;
  readonly command: LockCommand;
  readonly dueAtMs: number;
  proposedAtMs: number | null;
}

/** Stale heap items tolerated beyond the live deadlines before the heap is rebuilt. */
const STALE_SLACK = 64;

export class LockTimers {
  /** One deadline per key, replaced when the thing it watches changes. */
  private readonly deadlines = new Map<string, Deadline>();
  /**
   * The deadlines by when `due` may next return them, so a tick costs O(log n) per
   * command it returns rather than a scan of every deadline. A replaced or deleted
   * deadline leaves its item behind (stale: no longer the map's entry for its key); it
   * is dropped when it surfaces, or when stale items pile up and the heap is rebuilt.
   */
  private readonly queue = new MinHeap<Deadline>();

  constructor(private readonly options: LockTimersOptions) {
    assert(options.reproposeIntervalMs > 0, 'reproposeIntervalMs must be positive');
    assert(options.dueBatchMax > 0, 'dueBatchMax must be positive');
  }

  get size(): number {
    return this.deadlines.size;
  }

  /** Records the events of the entry at `index`, applied at `nowMs` on this node's clock. */
  applied(index: LogIndex, events: readonly LockEvent[], nowMs: number): void {
    for (const event of events) this.track(index, event, nowMs);
  }

  private track(index: LogIndex, event: LockEvent, nowMs: number): void {
    // Any change to a lock's holders, waiters or delays may settle its pending
    // promotion; the state machine then ends the entry with promotionPending for the
    // lock if one is still owed, which sets the deadline again.
    if (changesPromotion(event)) this.delete(promoteKey(event.lock));
    switch (event.type) {
      case 'sessionRefreshed':
        this.set(sessionKey(event.sessionId), expire(event.sessionId, index), nowMs + event.ttlMs);
        return;
      case 'sessionEnded':
        this.delete(sessionKey(event.sessionId));
        return;
      case 'queued':
        if (event.waiter.waitMs > 0) {
          const { sessionId, requestIndex, waitMs } = event.waiter;
          const command: LockCommand = {
            type: 'WaitExpired',
            lock: event.lock,
            sessionId,
            waiterIndex: requestIndex,
          };
          this.set(waitKey(event.lock, sessionId), command, nowMs + waitMs);
        }
        return;
      case 'waitEnded':
        this.delete(waitKey(event.lock, event.sessionId));
        return;
      case 'granted':
        if (event.maxHoldMs > 0) {
          const { sessionId, token } = event.holder;
          this.set(
            holdKey(event.lock, sessionId),
            maxHold(event.lock, sessionId, token),
            nowMs + event.maxHoldMs,
          );
        }
        return;
      case 'released':
        this.delete(holdKey(event.lock, event.sessionId));
        return;
      case 'delayStarted': {
        const command: LockCommand = {
          type: 'LockDelayEnded',
          lock: event.lock,
          delayIndex: event.delayIndex,
        };
        this.set(delayKey(event.lock, event.delayIndex), command, nowMs + event.delayMs);
        return;
      }
      case 'delayEnded':
        this.delete(delayKey(event.lock, event.delayIndex));
        return;
      case 'promotionPending':
        // Due at once: the grant waits for nothing but its own entry.
        this.set(promoteKey(event.lock), promote(event.lock, index), nowMs);
        return;
    }
  }

  private set(key: string, command: LockCommand, dueAtMs: number): void {
    const deadline: Deadline = { key, command, dueAtMs, proposedAtMs: null };
    this.deadlines.set(key, deadline);
    this.queue.push(dueAtMs, deadline);
    this.rebuildIfStale();
  }

  private delete(key: string): void {
    this.deadlines.delete(key);
    this.rebuildIfStale();
  }

  private isLive(deadline: Deadline): boolean {
    return this.deadlines.get(deadline.key) === deadline;
  }

  /** When `due` may return the deadline next: its time, or a repropose interval after the last proposal. */
  private eligibleAtMs(deadline: Deadline): number {
    const proposedAt = deadline.proposedAtMs;
    return proposedAt === null ? deadline.dueAtMs : proposedAt + this.options.reproposeIntervalMs;
  }

  /** Keeps the heap within a constant factor of the live deadlines (amortized O(1) per change). */
  private rebuildIfStale(): void {
    if (this.queue.size <= 2 * this.deadlines.size + STALE_SLACK) return;
    this.queue.clear();
    for (const deadline of this.deadlines.values()) {
      this.queue.push(this.eligibleAtMs(deadline), deadline);
    }
  }

  /**
   * Rebuilds every deadline from a restored state machine, counting each from `nowMs`.
   * That is later than the real events, so nothing ends early; it may end late by the
   * time since the snapshot was taken.
   */
  restore(state: LockStateMachine, nowMs: number): void {
    this.deadlines.clear();
    this.queue.clear();
    for (const id of state.sessionIds()) {
      const session = state.session(id);
      assert(session !== null, `session ${id} listed but missing`);
      this.set(sessionKey(id), expire(id, session.lastRefreshIndex), nowMs + session.ttlMs);
    }
    for (const lock of state.listLocks('', Number.MAX_SAFE_INTEGER))
      this.restoreLock(state, lock, nowMs);
  }

  private restoreLock(state: LockStateMachine, lock: string, nowMs: number): void {
    if (state.promotionPending(lock)) {
      const afterIndex = state.lastAppliedIndex as LogIndex;
      this.set(promoteKey(lock), promote(lock, afterIndex), nowMs);
    }
    for (const delay of state.delaysOf(lock)) {
      const command: LockCommand = { type: 'LockDelayEnded', lock, delayIndex: delay.index };
      this.set(delayKey(lock, delay.index), command, nowMs + delay.delayMs);
    }
    const description = state.describe(lock);
    for (const waiter of description.waiters) {
      if (waiter.waitMs === 0) continue;
      const { sessionId, requestIndex } = waiter;
      const command: LockCommand = {
        type: 'WaitExpired',
        lock,
        sessionId,
        waiterIndex: requestIndex,
      };
      this.set(waitKey(lock, sessionId), command, nowMs + waiter.waitMs);
    }
    for (const holder of description.holders) {
      const maxHoldMs = state.maxHoldOf(lock, holder.sessionId);
      if (maxHoldMs === 0) continue;
      this.set(
        holdKey(lock, holder.sessionId),
        maxHold(lock, holder.sessionId, holder.token),
        nowMs + maxHoldMs,
      );
    }
  }

  /**
   * Commands whose time has come, for the leader to propose. A command already
   * proposed is offered again only after `reproposeIntervalMs`, in case its entry was
   * lost in a leader change.
   */
  due(nowMs: number): LockCommand[] {
    const commands: LockCommand[] = [];
    while (commands.length < this.options.dueBatchMax) {
      const nextAtMs = this.queue.peekPriority();
      if (nextAtMs === undefined || nextAtMs > nowMs) break;
      const deadline = this.queue.pop();
      if (deadline === undefined || !this.isLive(deadline)) continue;
      deadline.proposedAtMs = nowMs;
      commands.push(deadline.command);
      this.queue.push(this.eligibleAtMs(deadline), deadline);
    }
    return commands;
  }
}

function expire(sessionId: SessionId, lastRefreshIndex: LogIndex): LockCommand {
  return { type: 'ExpireSession', sessionId, lastRefreshIndex };
}

function maxHold(lock: string, sessionId: SessionId, token: FencingToken): LockCommand {
  return { type: 'MaxHoldReached', lock, sessionId, token };
}

function promote(lock: string, afterIndex: LogIndex): LockCommand {
  return { type: 'Promote', lock, afterIndex };
}

function changesPromotion(
  event: LockEvent,
): event is Extract<
  LockEvent,
  { type: 'granted' | 'released' | 'waitEnded' | 'delayStarted' | 'delayEnded' }
> {
  switch (event.type) {
    case 'granted':
    case 'released':
    case 'waitEnded':
    case 'delayStarted':
    case 'delayEnded':
      return true;
    default:
      return false;
  }
}

function sessionKey(id: SessionId): string {
  return `s/${id}`;
}
function waitKey(lock: string, id: SessionId): string {
  return `w/${id}/${lock}`;
}
function holdKey(lock: string, id: SessionId): string {
  return `h/${id}/${lock}`;
}
function promoteKey(lock: string): string {
  return `p/${lock}`;
}
/** One deadline per delay: a lock keeps every delay placed on it until each has run. */
function delayKey(lock: string, delayIndex: LogIndex): string {
  return `d/${delayIndex}/${lock}`;
}
