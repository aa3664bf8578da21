import { describe, expect, it } from 'vitest';
import { INJECTED_RUNTIME_BUGS } from '../../../src/tools/simulate/runtime/bugs.ts';
import { RUNTIME_FOCUS, type RuntimeFocus } from '../../../src/tools/simulate/runtime/options.ts';
import {
  type RuntimeResult,
  runRuntimeSimulation,
} from '../../../src/tools/simulate/runtime/runner.ts';

/** Run every seed of a tooth's range (its full catch rate), not just until it is caught enough. */
const FULL_RATES = process.env.DLM_TEETH_RATES === '1';

/**
 * The runtime simulation from the test suite: real DlmNodes and Lock handlers under
 * faults, clients checked against the committed log. `npm run simulate -- --runtime
 * --seeds N` runs many more seeds; `--runtime --seed N --verbose` replays one.
 */
const SEEDS = Number(process.env.DLM_RUNTIME_SEEDS ?? 300);
const FROM = Number(process.env.DLM_RUNTIME_FROM ?? 1);

function describeFailure(result: RuntimeResult): string {
  return [
    `seed ${result.seed}: ${result.violation}`,
    `replay: npm run simulate -- --runtime --seed ${result.seed} --verbose`,
    `options: ${JSON.stringify(result.options)}`,
    ...result.notes,
    ...result.trace.slice(-15),
  ].join('\n');
}

describe('runtime simulation', () => {
  it(`runs ${SEEDS} seeds of real nodes and clients with no unexplained violation`, async () => {
    const startedMs = performance.now();
    let events = 0;
    let answers = 0;
    let commits = 0;
    for (let seed = FROM; seed < FROM + SEEDS; seed++) {
      const result = await runRuntimeSimulation(seed);
      events += result.events;
      answers += result.answersChecked;
      commits += result.committedEntries;
      if (result.violation !== null) expect.fail(describeFailure(result));
    }
    const wallSeconds = ((performance.now() - startedMs) / 1000).toFixed(1);
    console.log(
      `runtime simulation: ${SEEDS} seeds, ${events} events, ${answers} answers checked, ${wallSeconds} s`,
    );
    // The runs must exercise the cluster, not idle through the seeds.
    expect(events / SEEDS).toBeGreaterThan(2_000);
    expect(answers / SEEDS).toBeGreaterThan(30);
    expect(commits / SEEDS).toBeGreaterThan(50);
  }, 240_000);

  // Under reacquiredGrant, seed 68 (on main when added): c4 gives up b (request 5000039,
  // granted at 319), asks again at once (5000040, told the same grant) and gives that up
  // too; 5000039's Withdraw rightly keeps the grant for 5000040, whose server (n2)
  // crashed before withdrawing. The abandoned-acquire check blamed 5000039, whose server
  // lived; it now holds a grant against every request told of it. A range rather than
  // the one seed, which any scheduling change moves (with quiet-commit merged, seed 68
  // no longer runs so): the focus makes such re-told grants on most seeds.
  it('leaves a re-acquired grant to the last request told of it (seeds 61..80 of reacquiredGrant clean)', async () => {
    for (let seed = 61; seed <= 80; seed++) {
      const result = await runRuntimeSimulation(seed, RUNTIME_FOCUS.reacquiredGrant);
      if (result.violation !== null) expect.fail(describeFailure(result));
    }
  }, 60_000);

  it('replays a seed exactly, crash loops and all', async () => {
    for (const seed of [3, 30]) {
      const first = await runRuntimeSimulation(seed);
      const second = await runRuntimeSimulation(seed);
      expect(first.stats.crashes).toBeGreaterThan(0);
      expect(second.traceHash).toBe(first.traceHash);
      expect(second.events).toBe(first.events);
      expect(second.virtualTimeMs).toBe(first.virtualTimeMs);
      expect(second.stats).toEqual(first.stats);
      expect(second.violation).toBe(first.violation);
      expect(second.trace).toEqual(first.trace);
    }
  });
});

describe('the runtime simulation has teeth', () => {
  // Every seed range below was measured before clients took lock sets, semaphores and
  // elections: without them each seed runs as it did then.
  const BEFORE_SETS = { lockSetShare: 0, semaphoreShare: 0, electionShare: 0 };

  it('catches reads served without ReadIndex within 40 seeds', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const result = await runRuntimeSimulation(
        seed,
        BEFORE_SETS,
        INJECTED_RUNTIME_BUGS.servesReadsLocally,
      );
      const violation = result.violation ?? '';
      if (!/^Violation: Answer: .*kind":"(Describe|ValidateFence)/.test(violation)) continue;
      // The same seed with linearizable reads has no read violation: the bug did it.
      const clean = await runRuntimeSimulation(seed, BEFORE_SETS);
      expect(clean.violation ?? '').not.toMatch(/kind":"(Describe|ValidateFence)/);
      return;
    }
    expect.fail('reads served from local state went unnoticed for 40 seeds');
  });

  /**
   * Teeth aimed by a focus (RUNTIME_FOCUS): the workload forces a rare bug's
   * preconditions, so the bug is caught on several seeds of a small range, not on one
   * lucky seed that any change to scheduling moves. Each must be caught at least
   * `caughtMin` times in the range, as the stated violation, and every caught seed must
   * be clean under the same focus without the bug. It stops once caught that often,
   * unless DLM_TEETH_RATES=1 (the whole range, as in simulation.test.ts).
   */
  async function focusedTooth(
    bug: keyof typeof INJECTED_RUNTIME_BUGS,
    focus: RuntimeFocus,
    first: number,
    last: number,
    caughtMin: number,
    kind: RegExp,
  ): Promise<void> {
    const overrides = RUNTIME_FOCUS[focus];
    const caught: number[] = [];
    for (let seed = first; seed <= last; seed++) {
      if (!FULL_RATES && caught.length >= caughtMin) break;
      const result = await runRuntimeSimulation(seed, overrides, INJECTED_RUNTIME_BUGS[bug]);
      if (result.violation === null) continue;
      expect(result.violation, `seed ${seed}`).toMatch(kind);
      const clean = await runRuntimeSimulation(seed, overrides);
      expect(clean.violation, `seed ${seed} without ${bug}`).toBeNull();
      caught.push(seed);
    }
    console.log(
      `${bug} (focus ${focus}): caught at seeds ${caught.join(', ')} of ${first}..${last}`,
    );
    expect(caught.length).toBeGreaterThanOrEqual(caughtMin);
  }

  // The same bug as Leader reads (issue 17). Under its focus every read is a Leader read:
  // caught on 16 of seeds 1..20 when added (8 of 1..10).
  it('catches Leader reads served without ReadIndex on at least 4 of seeds 1..10', async () => {
    await focusedTooth(
      'servesReadsLocally',
      'staleElectionReads',
      1,
      10,
      4,
      /^Violation: Answer: .*kind":"Leader"/,
    );
  }, 120_000);

  // A node catches up by a snapshot that covers an Acquire its caller gave up on (found
  // at runtime seed 12158 of 5,000 from 10,000). Under its focus: 8 of seeds 1..60 when
  // added (11, 35, 37, 49, 50, 51, 54, 55), each clean without the bug.
  it('catches ignoresRestoredAttempts on at least 3 of seeds 1..60', async () => {
    await focusedTooth(
      'ignoresRestoredAttempts',
      'snapshotCoversGivenUp',
      1,
      60,
      3,
      /^Violation: Abandoned acquire: /,
    );
  }, 180_000);

  // A Withdraw that names a grant told to a later request of its session (found at
  // runtime seed 839; unfocused, 3 of seeds 1..1500 caught it). Under its focus a client
  // that gave up an Acquire asks for the same lock again at once and gives that up too:
  // 16 of seeds 1..20 and 16 of 101..120 when added (18 and 15 with quiet-commit
  // merged), each as State machine safety (the Withdraw gave back nothing where the
  // reference gave back the grant), each clean without the bug.
  it('catches giveBackByEntryIndex on at least 5 of seeds 1..10', async () => {
    await focusedTooth(
      'giveBackByEntryIndex',
      'reacquiredGrant',
      1,
      10,
      5,
      /^Violation: (State( machine safety)?|Abandoned acquire): /,
    );
  }, 120_000);

  // Measured over a fixed range, as the core simulator's newer teeth are: it needs a
  // follower to apply an entry while the leader's write and another follower's are still
  // in flight. Caught on 4 of seeds 1..40 when added, each time as Durability.
  it('catches a leader counting its own copy before its write is durable on at least 2 of seeds 1..40', async () => {
    let caught = 0;
    let lastSeed = 0;
    for (let seed = 1; seed <= 40; seed++) {
      if (!FULL_RATES && caught >= 2) break;
      lastSeed = seed;
      const result = await runRuntimeSimulation(
        seed,
        BEFORE_SETS,
        INJECTED_RUNTIME_BUGS.countsOwnCopyBeforePersisting,
      );
      if (result.violation === null) continue;
      expect(result.violation).toMatch(/^Violation: Durability: /);
      caught++;
    }
    console.log(
      `countsOwnCopyBeforePersisting: caught on ${caught} of runtime seeds 1..${lastSeed} (Durability)`,
    );
    expect(caught).toBeGreaterThanOrEqual(2);
  }, 240_000);

  // Each bug the runtime simulation found, brought back through a test-only seam, must
  // be caught within a range of seeds, and the same seed without the bug must be clean.
  // First catches measured with per-node lock sections and the overlapped write path
  // (both moved every seed's run): seeds 184, 2, 55 and 1. A range that starts past 1 keeps a rare bug's
  // tooth cheap: it states where the catch is, not how soon. For the two state-machine
  // bugs the check that fires is State machine safety (a node's outcome at an index
  // differs from the reference replay of the committed log) or State: that shows the
  // node does what the log says, not what clients were told, so these are weaker teeth
  // than the first.
  const TEETH: readonly [keyof typeof INJECTED_RUNTIME_BUGS, number, number, RegExp][] = [
    // Rare (first at 192, then 232, of seeds 1..240 since a node applies what commits
    // while its write runs; 3 of 1..1000 since commit notices go unanswered, first 44; 8
    // when a commit index alone began to wait for the next write, first 84; 6 before,
    // first 232; 10 before that, first 89): the range states where the catch is.
    ['idsRestartWithProcess', 191, 200, /^Violation: Answer: /],
    [
      'staleRememberedGrant',
      1,
      20,
      /^Violation: (State( machine safety)?|Answer|Mutual exclusion|Give-back): /,
    ],
    // Each node's config has its own lock section (options.lockSections): a node that
    // applies its file's rules instead of the log's applies some entry differently.
    [
      'followsItsFile',
      1,
      10,
      /^Violation: (Rules: after \d+ n\d+ has|State machine safety: n\d+ applied)/,
    ],
    // Nodes apply their own file's rules until the first SetRules: a leader that takes a
    // write before it lets an entry that nodes may judge differently into the log.
    ['writesBeforeRules', 1, 5, /^Violation: Rules: .* before any SetRules/],
    // Some nodes start on an older binary (options.behaviourMaxes): a leader that raises
    // the behaviour version without their stamps stops one of them on the raise, or
    // holds it back (no Raft traffic, from the moment the raise is in its log) so that it
    // campaigns on after the heal.
    [
      'raisesIgnoringStamps',
      1,
      10,
      /^Violation: (Behaviour: the cluster raised|Liveness: not quiet .* n\d:(preC|c)andidate)/,
    ],
  ];
  for (const [bug, first, last, kind] of TEETH) {
    it(`catches ${bug} within seeds ${first}..${last}`, async () => {
      for (let seed = first; seed <= last; seed++) {
        const result = await runRuntimeSimulation(seed, BEFORE_SETS, INJECTED_RUNTIME_BUGS[bug]);
        if (result.violation === null) continue;
        expect(result.violation).toMatch(kind);
        console.log(`${bug}: caught at seed ${seed}: ${result.violation.slice(0, 160)}`);
        expect((await runRuntimeSimulation(seed, BEFORE_SETS)).violation).toBeNull();
        return;
      }
      expect.fail(`${bug} went unnoticed in seeds ${first}..${last}`);
    }, 120_000);
  }
});
