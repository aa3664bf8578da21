/**
 * The dedupe window keeps a remembered Acquired without its holders (issue 12: they were
 * about a fifth of the state machine's heap at 100,000 held locks), yet a retry is told
 * today's holders, as before: retriedAcquire rebuilds them from the lock.
 */
import { expect, it } from 'vitest';
import { Log } from './lock-log.ts';

it('remembers an Acquired without holders, and a retry is still told the holders of now', () => {
  const log = new Log();
  const a = log.open();
  const b = log.open();
  const first = log.acquireCommand(a, 'shared', { mode: 'shared', requestId: 'ra' });
  const told = log.apply(first);
  expect(told.type === 'Acquired' && told.holders.map((h) => h.sessionId)).toEqual([a]);
  log.acquire(b, 'shared', { mode: 'shared', requestId: 'rb' });

  const kept = log.sm.snapshot().dedupe.map(([key, remembered]) => [key, remembered.result]);
  const acquired = kept.filter(
    ([, result]) => typeof result === 'object' && result.type === 'Acquired',
  );
  expect(acquired).toHaveLength(2);
  for (const [, result] of acquired) {
    expect(typeof result === 'object' && result.type === 'Acquired' && result.holders).toEqual([]);
  }

  const retried = log.apply(first);
  expect(retried.type === 'Acquired' && retried.holders.map((h) => h.sessionId)).toEqual([a, b]);
});
