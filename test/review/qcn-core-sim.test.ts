import { describe, expect, it } from 'vitest';
import { coalesceMessages } from '../../src/raft/coalesce.ts';
import type { Message } from '../../src/raft/types.ts';
import { deriveOptions } from '../../src/tools/simulate/options.ts';
import { runSimulation } from '../../src/tools/simulate/simulator.ts';

/**
 * Review of quiet-commit (b81d31b, commit notices): the core simulator (drops,
 * duplicates, reordering, partitions, crashes, pauses, membership changes, transfers,
 * snapshots) with every list a host sends folded by coalesceMessages, as RaftOutbox does
 * per turn, so that notices meet batches and heartbeat-prompted appends in both orders.
 * Counts what the fold did to notices, to show those paths ran. PASSES on the branch.
 *
 *   REVIEW_SIM_FROM=880001 REVIEW_SIM_SEEDS=150 npx vitest run test/review/qcn-core-sim.test.ts
 */
const FROM = Number(process.env.REVIEW_SIM_FROM ?? 880001);
const SEEDS = Number(process.env.REVIEW_SIM_SEEDS ?? 20);

function isNotice(m: Message): boolean {
  return m.type === 'AppendEntries' && m.commitNotice === true;
}

describe('review quiet-commit: core simulation with folded sends', () => {
  it(`${SEEDS} seeds from ${FROM} without a violation`, () => {
    const counts = { notices: 0, foldedIntoAnswered: 0, noticePairs: 0, out: 0 };
    for (let seed = FROM; seed < FROM + SEEDS; seed++) {
      const { appendBatchBytesMax } = deriveOptions(seed, {});
      const result = runSimulation(
        seed,
        {},
        {
          hostSendFilter: (messages) => {
            const out = coalesceMessages(messages, appendBatchBytesMax);
            const inNotices = messages.filter(isNotice).length;
            const outNotices = out.filter(isNotice).length;
            counts.notices += inNotices;
            counts.out += outNotices;
            // Notices gone: folded with another notice, or into an answered append.
            const gone = inNotices - outNotices;
            if (gone > 0) {
              // Approximate split: notice+notice folds keep one flagged message.
              const pairs = countNoticePairs(messages);
              counts.noticePairs += pairs;
              counts.foldedIntoAnswered += Math.max(0, gone - pairs);
            }
            return out;
          },
        },
      );
      if (result.violation !== null) {
        expect.fail(`seed ${seed}: ${result.violation}\n${result.trace.slice(-20).join('\n')}`);
      }
    }
    console.log(`notices ${JSON.stringify(counts)} over seeds ${FROM}..${FROM + SEEDS - 1}`);
    expect(counts.notices).toBeGreaterThan(0);
  }, 1_800_000);
});

/** Adjacent notices to one recipient in one list (what a notice+notice fold removes). */
function countNoticePairs(messages: readonly Message[]): number {
  const last = new Map<string, Message>();
  let pairs = 0;
  for (const m of messages) {
    const previous = last.get(m.to);
    if (previous !== undefined && isNotice(previous) && isNotice(m)) pairs++;
    last.set(m.to, m);
  }
  return pairs;
}
