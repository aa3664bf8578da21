import { afterEach, describe, expect, it } from 'vitest';
import { DlmError } from '../../src/node/errors.ts';
import { OPTIONS, TestCluster } from './cluster-harness.ts';

/**
 * A forwarded write whose message or answer is lost (a full peer queue, a broken
 * stream) fails within an election timeout, so its client retries at once instead of
 * waiting out the write's whole deadline.
 */
let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

describe('a forwarded write that gets no answer', () => {
  it('fails as UNAVAILABLE within an election timeout, not at its deadline', async () => {
    cluster = new TestCluster();
    const follower = await cluster.follower();
    cluster.network.hold((message) => message.kind === 'forward');
    const startedMs = performance.now();
    const error = await follower
      .write({ type: 'OpenSession', ttlMs: 5_000, clientName: 'lost', requestId: 'lost-1' })
      .then(
        () => null,
        (caught: unknown) => caught,
      );
    const tookMs = performance.now() - startedMs;
    expect(error).toBeInstanceOf(DlmError);
    expect((error as DlmError).code).toBe('UNAVAILABLE');
    expect((error as DlmError).message).toMatch(/did not answer a forwarded write/);
    const electionTimeoutMs = (OPTIONS.raft.electionTimeoutTicks ?? 10) * OPTIONS.tickIntervalMs;
    expect(tookMs).toBeLessThan(OPTIONS.proposalTimeoutMs / 2);
    expect(tookMs).toBeGreaterThanOrEqual(electionTimeoutMs - OPTIONS.tickIntervalMs);
  });
});
