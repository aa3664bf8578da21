import { describe, expect, it } from 'vitest';
import { ActivityClock } from '../../src/api/activity.ts';
import type { EventListener, RestoreListener } from '../../src/api/event-hub.ts';
import type { LockEvent } from '../../src/lock/index.ts';
import { fencingToken, logIndex, sessionId } from '../../src/util/ids.ts';

/** The two subscriptions ActivityClock takes, driven by hand. */
class Events {
  every: EventListener | null = null;
  restored: RestoreListener | null = null;
  onEvery(listener: EventListener): () => void {
    this.every = listener;
    return () => {
      this.every = null;
    };
  }
  onRestored(listener: RestoreListener): () => void {
    this.restored = listener;
    return () => {
      this.restored = null;
    };
  }
  emit(event: LockEvent): void {
    this.every?.(logIndex(1), event);
  }
}

const S = sessionId(7);
const granted: LockEvent = {
  type: 'granted',
  lock: 'a',
  holder: {
    sessionId: S,
    owner: '',
    mode: 'exclusive',
    token: fencingToken(9),
    requestIndex: logIndex(9),
  },
  requestId: 'r',
  maxHoldMs: 0,
};

describe('ActivityClock', () => {
  it('dates grants and refreshes when applied, forgets them when they end, and counts from a restore', () => {
    let nowMs = 1_000;
    const events = new Events();
    const clock = new ActivityClock(events, () => nowMs);
    nowMs = 1_500;
    events.emit({ type: 'sessionRefreshed', sessionId: S, ttlMs: 5_000 });
    events.emit(granted);
    nowMs = 4_000;
    expect(clock.heldMs('a', S)).toBe(2_500);
    expect(clock.sinceRefreshMs(S)).toBe(2_500);
    // Unknown to this node: counted from when it started tracking (a lower bound).
    expect(clock.heldMs('b', S)).toBe(3_000);
    events.emit({ type: 'sessionRefreshed', sessionId: S, ttlMs: 5_000 });
    nowMs = 4_200;
    expect(clock.sinceRefreshMs(S)).toBe(200);
    events.emit({
      type: 'released',
      lock: 'a',
      sessionId: S,
      token: fencingToken(9),
      reason: 'revoke',
    });
    events.emit({ type: 'sessionEnded', sessionId: S, reason: 'expire' });
    // Forgotten: a later question counts from the start again, nothing is kept.
    expect(clock.heldMs('a', S)).toBe(3_200);
    expect(clock.sinceRefreshMs(S)).toBe(3_200);
    events.emit(granted);
    nowMs = 5_000;
    events.restored?.(logIndex(100));
    nowMs = 5_300;
    expect(clock.heldMs('a', S)).toBe(300);
    clock.close();
    expect(events.every).toBeNull();
    expect(events.restored).toBeNull();
  });
});
