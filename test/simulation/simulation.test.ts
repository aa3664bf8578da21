import { describe, expect, it } from 'vitest';
import { INJECTED_BUGS, type InjectedBug } from '../../src/tools/simulate/bugs.ts';
import { SIM_FOCUS, type SimOptions } from '../../src/tools/simulate/options.ts';
import { runSimulation, type SimResult } from '../../src/tools/simulate/simulator.ts';

/**
 * The deterministic simulator run from the test suite: a few hundred seeds must be
 * clean, a seed must replay exactly, and every injected bug must be caught.
 * `npm run simulate -- --seeds N` runs many more.
 */
const CLEAN_SEEDS = Number(process.env.DLM_SIM_SEEDS ?? 220);

function describeFailure(result: SimResult): string {
  return [
    `seed ${result.seed}: ${result.violation}`,
    `replay: npm run simulate -- --seed ${result.seed}`,
    `options: ${JSON.stringify(result.options)}`,
    ...result.trace.slice(-15),
  ].join('\n');
}

describe('deterministic simulation', () => {
  it(`runs ${CLEAN_SEEDS} seeds with thousands of events each and no violation`, () => {
    let events = 0;
    let elections = 0;
    let commits = 0;
    for (let seed = 1; seed <= CLEAN_SEEDS; seed++) {
      const result = runSimulation(seed);
      if (result.violation !== null) expect.fail(describeFailure(result));
      expect(result.events).toBeGreaterThan(1000);
      events += result.events;
      elections += result.stats.elections;
      commits += result.stats.commits;
    }
    // The runs must actually exercise the cluster, not idle through the seeds.
    expect(events / CLEAN_SEEDS).toBeGreaterThan(5000);
    expect(elections).toBeGreaterThan(CLEAN_SEEDS * 2);
    expect(commits).toBeGreaterThan(CLEAN_SEEDS * 50);
    // CPU-bound: 105 s in a fresh-clone CI run, 131 s (past the 120 s default) in one
    // that shared the two cores with other work.
  }, 600_000);

  it('replays a seed exactly', () => {
    for (const seed of [7, 4242]) {
      const first = runSimulation(seed);
      const second = runSimulation(seed);
      expect(second.events).toBe(first.events);
      expect(second.virtualTimeMs).toBe(first.virtualTimeMs);
      expect(second.stats).toEqual(first.stats);
      expect(second.trace).toEqual(first.trace);
    }
  });

  it('derives different options from different seeds (swarm testing)', () => {
    const options = new Set<string>();
    for (let seed = 1; seed <= 20; seed++)
      options.add(JSON.stringify({ ...runOptions(seed), seed: 0 }));
    expect(options.size).toBe(20);
  });
});

function runOptions(seed: number): SimOptions {
  return runSimulation(seed, { faultPhaseMs: 0, livenessWindowMs: 5_000 }).options;
}

/**
 * Leader churn with one entry per AppendEntries: the leader's no-op travels apart from
 * the older entries it re-replicates, which is what Figure 8 needs.
 */
const LEADER_CHURN: Partial<SimOptions> = {
  nodeCount: 3,
  appendBatchBytesMax: 1,
  inflightMessagesMax: 4,
  dropProbability: 0.05,
  faultIntervalMs: 50,
  faultWeights: {
    partitionMajority: 2,
    isolateLeader: 3,
    bridge: 0,
    oneWay: 0,
    randomGrudge: 0,
    heal: 2,
    crash: 1,
    crashLeader: 3,
    pause: 0,
    transferLeadership: 0,
    membership: 0,
    staleLeader: 0,
  },
};

const TEETH: {
  bug: InjectedBug;
  overrides: Partial<SimOptions>;
  seedsMin?: number;
  seedsMax: number;
}[] = [
  { bug: 'commitsOldTermEntries', overrides: LEADER_CHURN, seedsMax: 300 },
  { bug: 'votesTwice', overrides: {}, seedsMax: 50 },
  { bug: 'acknowledgesBeforePersisting', overrides: {}, seedsMax: 50 },
  { bug: 'keepsConflictingSuffix', overrides: {}, seedsMax: 50 },
  // A retried Proclaim told Proclaimed after its term ended: rare (seeds 124 and 342 of
  // 1..400 on the final code; seed 9 on the branch that added it), so its range states
  // where the catch is, as the runtime simulator's rare teeth do.
  { bug: 'proclaimRetriesVerbatim', overrides: {}, seedsMin: 121, seedsMax: 130 },
];

describe('the simulator has teeth: injected bugs are caught', () => {
  for (const { bug, overrides, seedsMin, seedsMax } of TEETH) {
    const first = seedsMin ?? 1;
    it(`catches ${bug} within seeds ${first}..${seedsMax}`, () => {
      for (let seed = first; seed <= seedsMax; seed++) {
        const result = runSimulation(seed, overrides, INJECTED_BUGS[bug]);
        if (result.violation !== null) {
          // The same seed without the bug is clean: the violation is the bug's doing.
          expect(runSimulation(seed, overrides).violation).toBeNull();
          return;
        }
      }
      expect.fail(`${bug} went unnoticed for ${seedsMax} seeds`);
    });
  }
});

/**
 * Seed 222161048 drew 256-byte snapshot chunks one at a time, a snapshot every 3 entries
 * and 50 entries kept behind it: a 22 KB snapshot took ~2.7 s to stream while the log
 * outgrew 50 entries in ~1.5 s. Before the compaction floor, three followers received one
 * snapshot after another for the whole 30 s liveness window. That seed stopped starving a
 * follower whenever scheduling changed; its focus (SIM_FOCUS.snapshotsOutrunByLog) forces
 * the same race on most seeds: 14 of seeds 1..20 and 14 of 101..120 when added (12 and 13
 * with quiet-commit merged), each as a follower left in snapshot state, each clean
 * without the bug.
 */
describe('a follower receiving a snapshot holds the log after it', () => {
  it('catches ignoresCompactionFloor on at least 6 of seeds 1..20 (focus snapshotsOutrunByLog)', () => {
    const overrides = SIM_FOCUS.snapshotsOutrunByLog;
    const caught: number[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const result = runSimulation(seed, overrides, INJECTED_BUGS.ignoresCompactionFloor);
      if (result.violation === null) continue;
      expect(result.violation, `seed ${seed}`).toMatch(/^Violation: Liveness: .* snapshot match=/);
      // With the floor, the same seed under the same focus catches every follower up.
      expect(runSimulation(seed, overrides).violation, `seed ${seed} with the floor`).toBeNull();
      caught.push(seed);
    }
    console.log(
      `ignoresCompactionFloor (focus snapshotsOutrunByLog): caught at seeds ${caught.join(', ')} of 1..20`,
    );
    expect(caught.length).toBeGreaterThanOrEqual(6);
  }, 180_000);
});

/**
 * Seed 277: leader n5 of seven commits 31:4 on n3, n4, n6 and its own disk (4 of 7),
 * then, in the same event, applies 30:4, its own removal, and the simulator
 * decommissions it. The commit was registered only when n6 heard of it, under the new
 * six-voter config where n5's disk does not count, and the durability check reported
 * 3 of 6. The Raft core was right (test/raft/membership.test.ts drives the interleaving);
 * the simulator now registers a removed node's commits before it takes it out.
 */
describe('a leader that commits and applies its own removal in one event', () => {
  it('seed 277 judges the commit by the config the leader used', () => {
    // Its schedule is the one before semaphores and elections joined the workload.
    expect(runSimulation(277, { semaphoreShare: 0, electionShare: 0 }).violation).toBeNull();
  });
});

/**
 * Seed 846048652 draws seven members, one entry per append, two appends in flight and
 * up to 34 ms of delay, with five live sessions keeping alive through the log: after
 * healing, commits ran at 33/s for the whole 30 s window with every member within 4
 * entries of the leader, never all caught up at one instant, and the quiet-instant rule
 * alone reported a liveness failure. After a third of the window, members seen to keep
 * up with the leader let the clients go quiet, and the quiet rule then passes.
 */
describe('a cluster that is never quiet after healing', () => {
  it('seed 846048652 counts as live once every member keeps up with the leader', () => {
    const result = runSimulation(846048652);
    expect(result.violation).toBeNull();
    const { faultPhaseMs, livenessWindowMs } = result.options;
    expect(result.virtualTimeMs).toBeGreaterThanOrEqual(faultPhaseMs + livenessWindowMs / 3);
  });
});

/**
 * The newer teeth are measured, not just found once: each runs a fixed range of seeds
 * with the default options (what `npm run simulate` runs) and must be caught on at
 * least `caughtMin` of them. In `npm test` a tooth stops once it is caught that often
 * and prints the seed it took (a checker that goes blunt needs more of the range before
 * it goes blind); DLM_TEETH_RATES=1 runs the whole range and prints each full catch
 * rate. Seeds 1..100 are clean without the bug: the clean run above covers them.
 */
const RATE_SEEDS = 100;
const FULL_RATES = process.env.DLM_TEETH_RATES === '1';
const MEASURED_TEETH: { bug: InjectedBug; caughtMin: number }[] = [
  { bug: 'expiresRefreshedSessions', caughtMin: 20 },
  { bug: 'readsWithOwnConfirmation', caughtMin: 20 },
  { bug: 'localReadsSkipHeartbeatRound', caughtMin: 20 },
  { bug: 'tokenFromRequestEntry', caughtMin: 20 },
  // A waiting set granted only the lock that let it go; caught on 64 of 100 when added.
  { bug: 'grantsSetLockByLock', caughtMin: 40 },
  // Semaphores and elections (issue 17), each with its own invariant check silenced but
  // permitsOneShort (which breaks no invariant, only the promise that permits that fit
  // are granted). Caught on 40, 41 and 79 of 100 when added.
  { bug: 'permitsOverLimit', caughtMin: 25 },
  { bug: 'twoLeaders', caughtMin: 25 },
  { bug: 'permitsOneShort', caughtMin: 50 },
  { bug: 'followerReadsAppliedIndex', caughtMin: 90 },
  // Needs a leader's disk slower than a follower's round trip, as on the seeds that draw
  // slow disks (a quarter of them); caught on 15 of 100 when it was added.
  { bug: 'countsOwnCopyBeforePersisting', caughtMin: 10 },
];

describe('the simulator has teeth: catch rates over a fixed seed range', () => {
  for (const { bug, caughtMin } of MEASURED_TEETH) {
    it(`catches ${bug} on at least ${caughtMin} of seeds 1..${RATE_SEEDS}`, () => {
      let caught = 0;
      let lastSeed = 0;
      const properties = new Map<string, number>();
      for (let seed = 1; seed <= RATE_SEEDS; seed++) {
        if (!FULL_RATES && caught >= caughtMin) break;
        lastSeed = seed;
        const violation = runSimulation(seed, {}, INJECTED_BUGS[bug]).violation;
        if (violation === null) continue;
        caught++;
        const property = violation.split(':').slice(1, 2).join('').trim();
        properties.set(property, (properties.get(property) ?? 0) + 1);
      }
      const byProperty = [...properties].map(([name, count]) => `${name} ${count}`).join(', ');
      console.log(`${bug}: caught on ${caught} of seeds 1..${lastSeed} (${byProperty})`);
      expect(caught).toBeGreaterThanOrEqual(caughtMin);
    });
  }
});
