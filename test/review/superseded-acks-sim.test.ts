import { describe, expect, it } from 'vitest';
import { withoutSupersededAcks } from '../../src/node/superseded-acks.ts';
import type { Message } from '../../src/raft/index.ts';
import { runSimulation } from '../simulation/simulator.ts';

/**
 * Review of perf-cpu (46f110f): the deterministic simulator (drops, duplicates,
 * reordering, partitions, crashes, fsync latency, leader churn, snapshots, ReadIndex
 * reads on stale leaders) with every list a node sends passed through
 * withoutSupersededAcks, as node.ts sendRaft now does. Safety and the liveness phase
 * must hold as without it.
 */
const SEEDS = Number(process.env.REVIEW_SIM_SEEDS ?? 80);

describe('review perf-cpu: simulation with superseded acks dropped', () => {
  it(`runs ${SEEDS} seeds with no violation, and the filter does drop acks`, () => {
    let dropped = 0;
    const hostSendFilter = (messages: readonly Message[]) => {
      const kept = withoutSupersededAcks(messages);
      dropped += messages.length - kept.length;
      return kept;
    };
    for (let seed = 1; seed <= SEEDS; seed++) {
      const result = runSimulation(seed, {}, { hostSendFilter });
      if (result.violation !== null) {
        expect.fail(`seed ${seed}: ${result.violation}\n${result.trace.slice(-15).join('\n')}`);
      }
    }
    expect(dropped).toBeGreaterThan(SEEDS);
  }, 600_000);
});
