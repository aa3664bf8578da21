import type { LockEvent } from '../lock/index.ts';
import type { SessionId } from '../util/ids.ts';
import type { EventHub } from './event-hub.ts';

/**
 * When this node applied each live grant and each session's last refresh, on its own
 * monotonic clock, for the hold times and refresh ages that ListLocks, ListSessions and
 * Describe report. The state machine has no clocks (the log decides, not time), so the
 * times are this node's: a grant or refresh applied before the node started or
 * installed a snapshot is dated from then, which makes every age a lower bound.
 *
 * Memory is bounded by the state: an entry goes when its grant or session ends. Grants
 * are kept per session, then per lock name (the state machine's own string), not under a
 * joined key: a joined key was a new string per held lock, some 55 bytes each at
 * 100,000 held locks (heap snapshot, issue 12).
 */
export class ActivityClock {
  private readonly grantedAtMs = new Map<SessionId, Map<string, number>>();
  private readonly refreshedAtMs = new Map<SessionId, number>();
  /** Ages of what this node did not see applied are counted from here. */
  private knownSinceMs: number;
  private readonly unsubscribe: () => void;
  private readonly unsubscribeRestored: () => void;

  constructor(
    events: Pick<EventHub, 'onEvery' | 'onRestored'>,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.knownSinceMs = nowMs();
    this.unsubscribe = events.onEvery((_index, event) => this.track(event));
    this.unsubscribeRestored = events.onRestored(() => {
      this.grantedAtMs.clear();
      this.refreshedAtMs.clear();
      this.knownSinceMs = this.nowMs();
    });
  }

  /** Milliseconds since this node applied the grant of `lock` to `session`. */
  heldMs(lock: string, session: SessionId): number {
    return this.age(this.grantedAtMs.get(session)?.get(lock));
  }

  /** Milliseconds since this node applied the session's last OpenSession or KeepAlive. */
  sinceRefreshMs(session: SessionId): number {
    return this.age(this.refreshedAtMs.get(session));
  }

  close(): void {
    this.unsubscribe();
    this.unsubscribeRestored();
  }

  private age(atMs: number | undefined): number {
    return Math.max(0, Math.floor(this.nowMs() - (atMs ?? this.knownSinceMs)));
  }

  private track(event: LockEvent): void {
    switch (event.type) {
      case 'granted': {
        const session = event.holder.sessionId;
        let grants = this.grantedAtMs.get(session);
        if (grants === undefined) {
          grants = new Map();
          this.grantedAtMs.set(session, grants);
        }
        grants.set(event.lock, this.nowMs());
        return;
      }
      case 'released': {
        const grants = this.grantedAtMs.get(event.sessionId);
        grants?.delete(event.lock);
        if (grants?.size === 0) this.grantedAtMs.delete(event.sessionId);
        return;
      }
      case 'sessionRefreshed':
        this.refreshedAtMs.set(event.sessionId, this.nowMs());
        return;
      case 'sessionEnded':
        // Its grants were released by events of their own before this one.
        this.refreshedAtMs.delete(event.sessionId);
        this.grantedAtMs.delete(event.sessionId);
        return;
      default:
        return;
    }
  }
}
