import { describe, expect, it } from 'vitest';
import { runJepsen } from '../../src/tools/jepsen/run.ts';
import {
  countEvents,
  expectCleanRun,
  faultVerdict,
  grantsDuring,
  statOf,
} from './nemesis-support.ts';

/**
 * The corrupt-record nemesis against real processes (issue 13, point 5): a node is
 * killed, one bit of one record in its own LevelDB is flipped, and started again it
 * must refuse, naming the database and the record, while the others serve. Its own
 * copy from before the damage is then put back, and it must catch up. (That the
 * refusal happens at all is also tested on its own, in test/cluster/startup.test.ts;
 * here it happens under load, on whichever record the seed picks.)
 */
describe('jepsen corrupt-record nemesis', () => {
  it('a node restarted on a corrupted record refuses to start, the others serve, and its restored copy rejoins', {
    timeout: 120_000,
  }, async () => {
    const result = await runJepsen({
      seconds: 14,
      seed: 20261204,
      clients: 3,
      locks: 2,
      nemeses: ['corrupt'],
      opening: ['corrupt'],
    });
    expectCleanRun(result);
    const verdict = faultVerdict(result, 'corrupt record');
    console.log(`corrupt: ${JSON.stringify(verdict.details)}`);
    expect(verdict.valid).toBe(true);
    const corruptions = statOf(verdict, 'corruptions');
    expect(corruptions).toBeGreaterThanOrEqual(1);
    expect(statOf(verdict, 'refused')).toBe(corruptions);
    expect(statOf(verdict, 'othersServed')).toBe(corruptions);
    expect(statOf(verdict, 'rejoined')).toBe(corruptions);
    expect(countEvents(result, 'corrupt-restore')).toBe(corruptions);
    expect(grantsDuring(result, 'corrupt')).toBeGreaterThan(0);
  });
});
