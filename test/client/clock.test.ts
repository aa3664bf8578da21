import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { ApiCluster, IDS, sleep } from '../api/harness.ts';
import { stepWallClock } from '../support/wall-clock.ts';

/**
 * The client's deadlines and intervals read a monotonic clock: a step of the wall clock
 * (NTP, an operator) must not move the session's safe deadline.
 */
let cluster: ApiCluster | null = null;
let client: DlmClient | null = null;
let restoreWallClock: (() => void) | null = null;

afterEach(async () => {
  restoreWallClock?.();
  restoreWallClock = null;
  client?.close();
  client = null;
  await cluster?.stop();
  cluster = null;
});

/** Resolves with performance.now() when `signal` aborts, or with null after `timeoutMs`. */
function abortTime(signal: AbortSignal, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(performance.now());
    });
  });
}

describe('client clocks', () => {
  it('a wall clock stepped back an hour mid-session does not delay the signal', async () => {
    cluster = await ApiCluster.start();
    const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
    client = new DlmClient({ endpoints, attemptTimeoutMs: 300 });
    const ttlMs = 900;
    const safetyMarginMs = 200;
    const session = await client.openSession({ ttlMs, safetyMarginMs });
    restoreWallClock = stepWallClock(-3_600_000);
    // At least one keepalive (every ttl/3) is sent and confirmed after the step.
    await sleep(ttlMs / 3 + 250);
    expect(session.alive).toBe(true);
    const fired = abortTime(session.signal, 3 * ttlMs);
    const stoppedAtMs = performance.now();
    await cluster.stop();
    cluster = null;
    const firedAtMs = await fired;
    expect(firedAtMs, 'the signal did not fire').not.toBeNull();
    // The last keepalive confirmed was sent before the stop.
    expect((firedAtMs ?? Number.POSITIVE_INFINITY) - stoppedAtMs).toBeLessThan(
      ttlMs - safetyMarginMs + 100,
    );
  });
});
