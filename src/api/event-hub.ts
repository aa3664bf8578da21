import type { LockEvent } from '../lock/index.ts';
import type { DlmNode } from '../node/node.ts';
import { type LogIndex, logIndex, type SessionId } from '../util/ids.ts';
import type { ApiLogger } from './errors.ts';

export type EventListener = (index: LogIndex, event: LockEvent) => void;
/** This node replaced its state with a snapshot up to `index`; see DlmNode.onRestored. */
export type RestoreListener = (index: LogIndex) => void;
/** This node no longer knows a leader (it is cut off, or an election is on). */
export type LeaderLostListener = () => void;

/**
 * One subscription to the node fans applied events out to the calls that wait for
 * them. Waiting Acquires are indexed by session, so an applied entry costs one map
 * lookup per event instead of a call per waiting client; Watch streams see every event.
 *
 * Listeners run inside the node's apply loop, where a throw would stop the node: every
 * call is guarded, and a failure is logged and dropped.
 */
export class EventHub {
  private readonly bySession = new Map<SessionId, Set<EventListener>>();
  private readonly everything = new Set<EventListener>();
  private readonly restores = new Set<RestoreListener>();
  private readonly leaderLosses = new Set<LeaderLostListener>();
  private readonly unsubscribe: () => void;
  private readonly unsubscribeRestored: () => void;

  constructor(
    node: Pick<DlmNode, 'subscribe' | 'onRestored' | 'observe' | 'status'>,
    private readonly logger: ApiLogger,
  ) {
    // The node keeps its observers for its life; after close() this one finds no listeners.
    node.observe({
      leaderChanged: () => {
        if (node.status().leaderId !== null) return;
        const index = logIndex(node.status().appliedIndex);
        for (const listener of [...this.leaderLosses]) this.guard(listener, index, 'leaderLost');
      },
    });
    this.unsubscribe = node.subscribe((index, output) => {
      for (const event of output.events) this.dispatch(index, event);
    });
    this.unsubscribeRestored = node.onRestored((index) => {
      for (const listener of [...this.restores])
        this.guard(() => listener(index), index, 'restore');
    });
  }

  /** Told when a snapshot replaced the state, so the events it covers were never seen. */
  onRestored(listener: RestoreListener): () => void {
    this.restores.add(listener);
    return () => this.restores.delete(listener);
  }

  /** Told each time this node stops knowing a leader; see LeaderLostListener. */
  onLeaderLost(listener: LeaderLostListener): () => void {
    this.leaderLosses.add(listener);
    return () => this.leaderLosses.delete(listener);
  }

  /** Events that name `session` (grants, releases, waits, refreshes, its end). */
  onSession(session: SessionId, listener: EventListener): () => void {
    let listeners = this.bySession.get(session);
    if (listeners === undefined) {
      listeners = new Set();
      this.bySession.set(session, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.bySession.get(session) === listeners) {
        this.bySession.delete(session);
      }
    };
  }

  onEvery(listener: EventListener): () => void {
    this.everything.add(listener);
    return () => this.everything.delete(listener);
  }

  close(): void {
    this.unsubscribe();
    this.unsubscribeRestored();
    this.bySession.clear();
    this.everything.clear();
    this.restores.clear();
    this.leaderLosses.clear();
  }

  private dispatch(index: LogIndex, event: LockEvent): void {
    const session = eventSession(event);
    for (const listener of session === null ? [] : (this.bySession.get(session) ?? [])) {
      this.call(listener, index, event);
    }
    for (const listener of this.everything) this.call(listener, index, event);
  }

  private call(listener: EventListener, index: LogIndex, event: LockEvent): void {
    this.guard(() => listener(index, event), index, event.type);
  }

  private guard(run: () => void, index: LogIndex, what: string): void {
    try {
      run();
    } catch (error) {
      this.logger('error', 'event listener failed', { index, event: what, error: String(error) });
    }
  }
}

function eventSession(event: LockEvent): SessionId | null {
  switch (event.type) {
    case 'granted':
      return event.holder.sessionId;
    case 'queued':
      return event.waiter.sessionId;
    case 'released':
    case 'proclaimed':
    case 'waitEnded':
    case 'sessionRefreshed':
    case 'sessionEnded':
      return event.sessionId;
    case 'delayStarted':
    case 'delayEnded':
    case 'promotionPending':
      return null;
  }
}
