import { defineConfig } from 'vitest/config';

/**
 * Tests that only compute: the simulators and the pure Raft and lock tests. They read
 * no clock and start no process, so they run two files at a time without making each
 * other flaky. Everything else (real processes, LevelDB, gRPC, timers) runs one file at
 * a time afterwards, with the machine's cores left to the nodes it starts: that is
 * what vitest does by default on 2 cores (os.availableParallelism() - 1 workers).
 */
const DETERMINISTIC = [
  'test/simulation/**/*.test.ts',
  'test/raft/**/*.test.ts',
  'test/lock/**/*.test.ts',
  'test/property/**/*.test.ts',
  'test/review/coalesce-core-sim.test.ts',
  'test/review/qcn-core-sim.test.ts',
  'test/review/rev-sm-diet-diff.test.ts',
  'test/review/rev-mem-sm-diff.test.ts',
  'test/review/smd-restore-continue-diff.test.ts',
  'test/review/rv-onea-parent-diff.test.ts',
  'test/review/rv-onea-crafted-restore.test.ts',
  'test/review/rv-alloc-wire-diff.test.ts',
  'test/review/retold-fuzz-review.test.ts',
  'test/review/skp-fuzz.test.ts',
];

export default defineConfig({
  test: {
    environment: 'node',
    globalSetup: ['test/support/build-dist.ts'],
    // Simulation and cluster tests run many seeds or real processes; give them room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    coverage: {
      provider: 'v8',
      include: ['src/**'],
      reporter: ['text-summary', 'text'],
    },
    projects: [
      {
        extends: true,
        test: {
          name: 'deterministic',
          include: DETERMINISTIC,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'system',
          include: ['test/**/*.test.ts'],
          exclude: DETERMINISTIC,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
