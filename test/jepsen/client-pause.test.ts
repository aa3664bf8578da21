import { describe, expect, it } from 'vitest';
import { faultWindows, runJepsen } from '../../src/tools/jepsen/run.ts';
import { countEvents, expectCleanRun, faultVerdict, statOf } from './nemesis-support.ts';

/**
 * The client-pause nemesis against real processes (issue 13, point 6): a client worker
 * process holding a lock is stopped (SIGSTOP) past its lease and continued (SIGCONT)
 * once another client has written under a later token. Its write is then stale: the
 * fenced register must refuse it, the register that ignores tokens takes it (the
 * negative control), and the history records it.
 */
describe('jepsen client-pause nemesis', () => {
  it('a client process stopped past its lease writes stale; the fenced register refuses it', {
    timeout: 120_000,
  }, async () => {
    const result = await runJepsen({
      seconds: 14,
      seed: 20261206,
      clients: 3,
      locks: 1,
      nemeses: ['client-pause'],
    });
    expectCleanRun(result);
    const verdict = faultVerdict(result, 'client pause');
    console.log(`client pause: ${JSON.stringify(verdict.details)}`);
    expect(verdict.valid).toBe(true);
    expect(statOf(verdict, 'staleWritesRefused')).toBeGreaterThanOrEqual(1);
    expect(result.control.violations.some((v) => v.check === 'register-stale-write')).toBe(true);

    // The worker's own calls are in the history, and a stale write of it was refused.
    const workerOps = result.ops.filter((op) => op.client === 'w0');
    expect(workerOps.some((op) => op.kind === 'acquire' && op.outcome === 'ok')).toBe(true);
    expect(
      workerOps.some(
        (op) => op.kind === 'write' && op.register === 'fenced' && op.outcome === 'fail',
      ),
    ).toBe(true);
    // It was frozen, not merely idle: it began no call while stopped.
    const pauses = faultWindows(result.nemesisEvents, result.endMs).filter(
      (w) => w.kind === 'client-pause',
    );
    expect(pauses.length).toBe(countEvents(result, 'client-resume'));
    // Past its lease at least once; a pause the run's end cut short (on a loaded
    // machine the last one may start late) is shorter, and still began no call.
    expect(pauses.some((pause) => pause.to - pause.from > 3_000)).toBe(true);
    for (const pause of pauses) {
      expect(pause.target).toBe('w0');
      const during = workerOps.filter((op) => op.invokeMs > pause.from && op.invokeMs < pause.to);
      expect(during).toEqual([]);
    }
  });
});
