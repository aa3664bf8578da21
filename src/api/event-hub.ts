import type { LockEvent } from '../lock/index.ts';
import { DlmError } from '../node/errors.ts';
import type { DlmNode } from '../node/node.ts';
import { type LogIndex, logIndex, type SessionId } from '../util/ids.ts';
import type { ApiLogger } from './errors.ts';

export type EventListener = (index: LogIndex, event: LockEvent) => void;
/** This node replaced its state with a snapshot up to `index`; see DlmNode.onRestored. */
export type RestoreListener = (index: LogIndex) => void;
/**
 * This node may no longer see what the leader commits: it knows no leader (cut off, or
 * an election is on), or a linearizable read through it ran out of time (see
 * `confirmIntervalMs`). `why` says which, for the error a stream ends with.
 */
export type LeaderLostListener = (why: string) => void;

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
  private confirmTimer: NodeJS.Timeout | null = null;
  private confirming = false;

  /**
   * `confirmIntervalMs`: while anyone listens for a lost leader, a linearizable read
   * through this node this often (0: never). A node cut off one way (it hears the
   * leader, the leader does not hear it) keeps its leader but applies nothing; the read
   * needs the leader's answer and this node's apply up to the leader's commit, so it
   * fails (after runtime.proposalTimeoutMs at most), and that is told as a lost leader.
   */
  constructor(
    private readonly node: Pick<
      DlmNode,
      'subscribe' | 'onRestored' | 'observe' | 'status' | 'read'
    >,
    private readonly logger: ApiLogger,
    private readonly confirmIntervalMs = 0,
  ) {
    // The node keeps its observers for its life; after close() this one finds no listeners.
    node.observe({
      leaderChanged: () => {
        const { id, leaderId } = node.status();
        if (leaderId === null) this.leaderLost(`${id} knows no leader`);
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

  /** Told each time this node may have lost the leader; see LeaderLostListener. */
  onLeaderLost(listener: LeaderLostListener): () => void {
    this.leaderLosses.add(listener);
    if (this.confirmTimer === null && this.confirmIntervalMs > 0) {
      this.confirmTimer = setInterval(() => this.confirmLeader(), this.confirmIntervalMs);
      this.confirmTimer.unref();
    }
    return () => {
      this.leaderLosses.delete(listener);
      if (this.leaderLosses.size === 0) this.stopConfirming();
    };
  }

  /**
   * Not on the leader, which steps down when it loses its quorum (CheckQuorum), and
   * whose reads a busy moment can refuse. Only a read that ran out of time counts: one
   * refused at once (too many pending, no leader, shutting down) says nothing new.
   */
  private confirmLeader(): void {
    if (this.confirming || this.node.status().role === 'leader') return;
    this.confirming = true;
    this.node
      .read(() => null)
      .catch((error: unknown) => {
        if (!(error instanceof DlmError) || error.code !== 'DEADLINE_EXCEEDED') return;
        this.leaderLost(
          `${this.node.status().id} could not confirm it follows the leader (${error.message})`,
        );
      })
      .finally(() => {
        this.confirming = false;
      });
  }

  private leaderLost(why: string): void {
    const index = logIndex(this.node.status().appliedIndex);
    for (const listener of [...this.leaderLosses])
      this.guard(() => listener(why), index, 'leaderLost');
  }

  private stopConfirming(): void {
    if (this.confirmTimer !== null) clearInterval(this.confirmTimer);
    this.confirmTimer = null;
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
    this.stopConfirming();
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
