import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, FenceGuard, StaleTokenError } from '../../src/client/index.ts';
import { ApiCluster, IDS } from '../api/harness.ts';

/**
 * FenceGuard, the resource side of fencing in memory: check-and-advance of the highest
 * token seen per resource.
 */
describe('FenceGuard', () => {
  it('admits a first token, the same grant again and later grants; refuses older ones', () => {
    const guard = new FenceGuard();
    expect(guard.highestToken('r')).toBeUndefined();
    expect(guard.admit('r', '7')).toBe(true);
    expect(guard.admit('r', '7')).toBe(true); // one holder, a second write
    expect(guard.admit('r', '12')).toBe(true);
    expect(guard.admit('r', '7')).toBe(false);
    expect(guard.admit('r', '11')).toBe(false);
    expect(guard.highestToken('r')).toBe(12n);
  });

  it('compares tokens as numbers, not strings', () => {
    const guard = new FenceGuard();
    expect(guard.admit('r', '10')).toBe(true);
    expect(guard.admit('r', '9')).toBe(false);
    expect(guard.admit('r', 18446744073709551615n)).toBe(true);
    expect(guard.admit('r', '18446744073709551614')).toBe(false);
  });

  it('keeps one highest token per resource', () => {
    const guard = new FenceGuard();
    expect(guard.admit('a', '100')).toBe(true);
    expect(guard.admit('b', '3')).toBe(true);
    expect(guard.admit('a', '3')).toBe(false);
    expect(guard.highestToken('b')).toBe(3n);
  });

  it('check() throws a StaleTokenError naming the resource and both tokens', () => {
    const guard = new FenceGuard();
    guard.check('inventory/42', '20');
    const error = (() => {
      try {
        guard.check('inventory/42', '19');
      } catch (caught) {
        return caught;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(StaleTokenError);
    expect(error).toMatchObject({ resource: 'inventory/42', token: 19n, highestToken: 20n });
    expect(String(error)).toContain('inventory/42: write under fencing token 19 refused');
  });

  it('refuses what is not a uint64 token, naming it', () => {
    const guard = new FenceGuard();
    for (const bad of ['', '-1', '1.5', ' 7', '0x10', '18446744073709551616']) {
      expect(() => guard.admit('r', bad)).toThrow(`fencing token ${JSON.stringify(bad)}`);
    }
    expect(() => guard.admit('r', -1n)).toThrow(RangeError);
    expect(guard.highestToken('r')).toBeUndefined();
  });

  it('run() lets an admitted write that awaits finish before a later grant is admitted', async () => {
    const guard = new FenceGuard();
    let value = '';
    const written: string[] = [];
    let finishOld: () => void = () => {};
    const oldWrite = guard.run('r', '5', async () => {
      await new Promise<void>((resolve) => {
        finishOld = resolve;
      });
      value = 'old';
      written.push('old');
    });
    const newWrite = guard.run('r', '6', () => {
      value = 'new';
      written.push('new');
    });
    // The stale holder comes back after the newer grant asked: refused in its turn.
    const staleWrite = guard.run('r', '5', () => {
      value = 'stale';
    });
    await Promise.resolve();
    finishOld();
    await oldWrite;
    await newWrite;
    await expect(staleWrite).rejects.toBeInstanceOf(StaleTokenError);
    expect(written).toEqual(['old', 'new']);
    expect(value).toBe('new');
  });

  it('run() rejects a malformed token (a rejected promise, not a throw) and does not run the write', async () => {
    const guard = new FenceGuard();
    let ran = false;
    await expect(
      guard.run('r', 'seven', () => {
        ran = true;
      }),
    ).rejects.toThrow(RangeError);
    await expect(guard.run('r', 7 as unknown as string, () => {})).rejects.toThrow(RangeError);
    await Promise.resolve();
    expect(ran).toBe(false);
  });
});

describe('FenceGuard with tokens from a cluster', () => {
  let cluster: ApiCluster | null = null;
  let client: DlmClient | null = null;

  afterEach(async () => {
    client?.close();
    client = null;
    await cluster?.stop();
    cluster = null;
  });

  it('refuses the first holder once the next holder of the lock has written', async () => {
    cluster = await ApiCluster.start();
    const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
    client = new DlmClient({ endpoints });
    const guard = new FenceGuard();
    const a = await client.openSession({ ttlMs: 10_000, clientName: 'a' });
    const b = await client.openSession({ ttlMs: 10_000, clientName: 'b' });

    const aLock = await a.acquire('fenced/resource', { waitMs: 5_000 });
    expect(guard.admit('fenced/resource', aLock.token)).toBe(true);
    // A loses the lock (here: it closes its session; in life, its lease ran out).
    await a.close();
    const bLock = await b.acquire('fenced/resource', { waitMs: 5_000 });
    expect(BigInt(bLock.token)).toBeGreaterThan(BigInt(aLock.token));
    expect(guard.admit('fenced/resource', bLock.token)).toBe(true);
    expect(guard.admit('fenced/resource', aLock.token)).toBe(false);
    expect(guard.admit('fenced/resource', bLock.token)).toBe(true);
    await bLock.release();
    await b.close();
  });
});
