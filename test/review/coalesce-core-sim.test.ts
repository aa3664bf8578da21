import { describe, expect, it } from 'vitest';
import { coalesceMessages } from '../../src/raft/coalesce.ts';
import { deriveOptions } from '../../src/tools/simulate/options.ts';
import { runSimulation } from '../../src/tools/simulate/simulator.ts';

/**
 * Review of coalesce (5e8f637): the core simulator (drops, duplicates, reordering,
 * partitions, crashes, config changes, transfers, snapshots) with every list of messages
 * a host sends folded by coalesceMessages, as node.ts's RaftOutbox does per turn (a
 * Ready's early messages, and its messages after the write, are each one list here).
 * Passes on the branch: kept as lasting coverage of the fold under faults. Teeth: a fold
 * that keeps the earlier commit index, or joins a resend, is the property test's job.
 */
const SEEDS = Number(process.env.REVIEW_SIM_SEEDS ?? 60);

describe('review coalesce: core simulation with folded sends', () => {
  it(`${SEEDS} seeds without a violation`, () => {
    let folded = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const { appendBatchBytesMax } = deriveOptions(seed, {});
      const result = runSimulation(
        seed,
        {},
        {
          hostSendFilter: (messages) => {
            const out = coalesceMessages(messages, appendBatchBytesMax);
            folded += messages.length - out.length;
            return out;
          },
        },
      );
      if (result.violation !== null) {
        expect.fail(`seed ${seed}: ${result.violation}\n${result.trace.slice(-15).join('\n')}`);
      }
    }
    // The fold must actually happen in these runs.
    console.log(`folded away ${folded} messages over ${SEEDS} seeds`);
    expect(folded).toBeGreaterThan(SEEDS);
  }, 900_000);
});
