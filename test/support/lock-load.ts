import { expect } from 'vitest';
import { newRequestId, type ProcessCluster } from './process-cluster.ts';

/** A client workload for real-process tests, and the check of what it was told. */
export interface Acknowledged {
  readonly lock: string;
  readonly token: string;
  released: boolean;
}

export async function openSession(c: ProcessCluster, clientName = 'load'): Promise<string> {
  const opened = await c.callAny('OpenSession', {
    ttl_ms: '60000',
    client_name: clientName,
    request_id: newRequestId(),
  });
  return String(opened.session_id);
}

/** When each acknowledged acquire was sent and when its answer came. */
export interface Timing {
  readonly sentAtMs: number;
  readonly ackedAtMs: number;
}

/**
 * One sequential client: acquires fresh locks (`<prefix>/<i>`) and releases every other
 * one until `stop` is set; records what was acknowledged, and when.
 */
export async function load(
  c: ProcessCluster,
  session: string,
  acknowledged: Acknowledged[],
  stop: { value: boolean },
  acks: Timing[],
  prefix = 'load',
): Promise<void> {
  for (let i = 0; !stop.value; i++) {
    const lock = `${prefix}/${i}`;
    const sentAtMs = Date.now();
    // acquireAny asks again as a new request when told grantEnded: a grant whose answer
    // was lost in a membership change or failover was given back, and the retry says so.
    const acquired = await c.acquireAny({
      lock,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      owner: 'load',
    });
    expect(acquired.acquired).toBe(true);
    const record: Acknowledged = { lock, token: String(acquired.fencing_token), released: false };
    acknowledged.push(record);
    acks.push({ sentAtMs, ackedAtMs: Date.now() });
    if (i % 2 === 0) {
      const released = await c.callAny('Release', {
        lock,
        session_id: session,
        fencing_token: record.token,
        request_id: newRequestId(),
      });
      expect(released.released).toBe(true);
      record.released = true;
    }
  }
}

/**
 * Every acknowledged grant is still valid, every acknowledged release took effect, and
 * the tokens of one sequential client rise (each is the index of a later log entry).
 */
export async function expectAcknowledgedState(
  c: ProcessCluster,
  acknowledged: readonly Acknowledged[],
): Promise<void> {
  const tokens = acknowledged.map((record) => BigInt(record.token));
  tokens.forEach((token, i) => {
    if (i > 0) expect(token).toBeGreaterThan(tokens[i - 1] ?? 0n);
  });
  for (const record of acknowledged) {
    const fence = await c.callAny('ValidateFence', {
      lock: record.lock,
      fencing_token: record.token,
    });
    expect({ lock: record.lock, valid: fence.valid }).toEqual({
      lock: record.lock,
      valid: !record.released,
    });
  }
}
