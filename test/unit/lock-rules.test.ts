/**
 * The lock rules are replicated state (issue 10): a SetRules entry puts them in force
 * at its index on every replica, whatever each node's own config says.
 */
import { describe, expect, it } from 'vitest';
import { lockTimingProblems } from '../../src/config/index.ts';
import {
  DEFAULT_LOCK_LIMITS,
  LOCK_LIMIT_CEILINGS,
  type LockCommand,
  type LockLimits,
  type LockSnapshot,
  LockStateMachine,
  lockRulesDifferences,
} from '../../src/lock/index.ts';
import {
  describeDifferences,
  type LockRulesReport,
  watchLockRules,
} from '../../src/node/lock-rules.ts';
import type { AppliedListener, RestoredListener } from '../../src/node/node.ts';
import { DEFAULT_RAFT_OPTIONS } from '../../src/raft/index.ts';
import { asIndex, expectRejected, Log } from './lock-log.ts';

const RULES: LockLimits = {
  ...DEFAULT_LOCK_LIMITS,
  sessionTtlMsMin: 200,
  sessionTtlMsMax: 5_000,
  lockDelayMs: 700,
  dedupeWindowMax: 3,
};

function setRules(log: Log, rules: unknown, onlyIfUnset = false) {
  return log.apply({ type: 'SetRules', rules: rules as LockLimits, onlyIfUnset });
}

describe('SetRules', () => {
  it('starts from the defaults and puts the rules in force at its index', () => {
    const log = new Log();
    expect(log.sm.rules).toEqual(DEFAULT_LOCK_LIMITS);
    expect(log.sm.rulesSetIndex).toBeNull();
    // Below the default minimum TTL: refused until the rules allow it.
    expectRejected(
      log.apply({ type: 'OpenSession', ttlMs: 300, clientName: 'c', requestId: 'early' }),
      'invalidArgument',
      'ttlMs',
      '1000',
    );
    expect(setRules(log, RULES)).toEqual({ type: 'RulesSet', rules: RULES });
    expect(log.sm.rules).toEqual(RULES);
    expect(log.sm.rulesSetIndex).toBe(log.index);
    expect(log.open(300)).toBe(log.index);
    expectRejected(
      log.apply({ type: 'OpenSession', ttlMs: 6_000, clientName: 'c', requestId: 'long' }),
      'invalidArgument',
      '5000',
    );
  });

  it('the default lock-delay in force when a holder expires is the one placed', () => {
    const log = new Log();
    const a = log.open(2_000);
    log.acquire(a, 'L');
    setRules(log, RULES);
    const out = log.applyFull({
      type: 'ExpireSession',
      sessionId: a,
      lastRefreshIndex: asIndex(a),
    });
    expect(out.events).toContainEqual({
      type: 'delayStarted',
      lock: 'L',
      delayIndex: log.index,
      delayMs: 700,
    });
  });

  it.each([
    [{ ...RULES, sessionsMax: 0 }, 'rules.sessionsMax'],
    [{ ...RULES, lockDelayMs: -1 }, 'rules.lockDelayMs'],
    [{ ...RULES, waitMsMax: 1.5 }, 'rules.waitMsMax'],
    [{ ...RULES, ownerBytesMax: '10' }, 'rules.ownerBytesMax'],
    [{ ...RULES, sessionTtlMsMin: 9_000 }, 'rules.sessionTtlMsMin'],
    [{ ...RULES, lockDelayMs: 70_000 }, 'rules.lockDelayMs'],
    [{ ...RULES, surprise: 1 }, 'rules.surprise'],
    [(({ locksMax: _, ...rest }) => rest)(RULES), 'rules.locksMax'],
  ])('refuses invalid rules (%#), naming the field, and changes nothing', (rules, field) => {
    const log = new Log();
    expectRejected(setRules(log, rules), 'invalidArgument', field);
    expect(log.sm.rules).toEqual(DEFAULT_LOCK_LIMITS);
    expect(log.sm.rulesSetIndex).toBeNull();
  });

  it('refuses rules that are not an object, by shape', () => {
    const log = new Log();
    expectRejected(setRules(log, [1, 2]), 'invalidArgument', 'rules');
    expectRejected(setRules(log, null), 'invalidArgument', 'SetRules.rules');
    expect(log.sm.rulesSetIndex).toBeNull();
  });

  it('refuses a keepAliveBatchMax above its ceiling, naming it; the default stays', () => {
    const log = new Log();
    expect(DEFAULT_LOCK_LIMITS.keepAliveBatchMax).toBe(1_000);
    const ceiling = LOCK_LIMIT_CEILINGS.keepAliveBatchMax;
    expect(ceiling).toBe(10_000);
    expectRejected(
      setRules(log, { ...RULES, keepAliveBatchMax: ceiling + 1 }),
      'invalidArgument',
      `keepAliveBatchMax must be at most ${ceiling} (its ceiling), got ${ceiling + 1}`,
    );
    expect(log.sm.rulesSetIndex).toBeNull();
    setRules(log, { ...RULES, keepAliveBatchMax: ceiling });
    expect(log.sm.rules.keepAliveBatchMax).toBe(ceiling);
  });

  it('with onlyIfUnset applies only while no rules were ever set', () => {
    const log = new Log();
    expect(setRules(log, RULES, true).type).toBe('RulesSet');
    const setAt = log.index;
    // A second leader's bootstrap proposal, committed after the first: changes nothing.
    expect(setRules(log, { ...RULES, lockDelayMs: 0 }, true)).toEqual({ type: 'Stale' });
    expect(log.sm.rules).toEqual(RULES);
    expect(log.sm.rulesSetIndex).toBe(setAt);
    // An operator's change applies whatever was set before.
    expect(setRules(log, DEFAULT_LOCK_LIMITS).type).toBe('RulesSet');
    expect(log.sm.rules).toEqual(DEFAULT_LOCK_LIMITS);
    expect(log.sm.rulesSetIndex).toBe(log.index);
  });

  it('an invalid bootstrap proposal leaves the rules unset, so the next one still applies', () => {
    const log = new Log();
    expect(setRules(log, { ...RULES, sessionsMax: 0 }, true).type).toBe('Rejected');
    expect(setRules(log, RULES, true).type).toBe('RulesSet');
  });

  it('lowered limits end nothing but refuse new requests; the dedupe window is never shrunk below what it remembers', () => {
    const log = new Log();
    const [first, ...others] = [log.open(2_000), log.open(2_000), log.open(2_000)];
    const sessions = [first, ...others];
    for (const [i, session] of sessions.entries()) log.acquire(session, `L${i}`);
    const remembered = log.sm.snapshot().dedupe;
    expect(remembered).toHaveLength(6);
    // Forgetting a result early would apply its retry twice: refused whole, naming the count.
    expectRejected(
      setRules(log, { ...RULES, sessionsMax: 2, locksMax: 1, dedupeWindowMax: 5 }),
      'invalidArgument',
      'rules.dedupeWindowMax',
      '(5)',
      '6 results',
    );
    expect(log.sm.rulesSetIndex).toBeNull();
    expect(setRules(log, { ...RULES, sessionsMax: 2, locksMax: 1, dedupeWindowMax: 6 }).type).toBe(
      'RulesSet',
    );
    log.sm.checkInvariants();
    expect(log.sm.sessionIds()).toEqual(sessions);
    expect(log.sm.snapshot().dedupe).toEqual(remembered);
    expectRejected(
      log.apply({ type: 'OpenSession', ttlMs: 2_000, clientName: 'c', requestId: 'more' }),
      'limitReached',
      'sessionsMax (2)',
    );
    expectRejected(log.acquire(first, 'new'), 'limitReached', 'locksMax (1)');
  });

  it('snapshot and restore keep the rules and where they were set', () => {
    const log = new Log();
    log.open(2_000);
    setRules(log, RULES);
    const text = JSON.stringify(log.sm.snapshot());
    const copy = new LockStateMachine();
    copy.restore(JSON.parse(text));
    expect(copy.rules).toEqual(RULES);
    expect(copy.rulesSetIndex).toBe(log.index);
    expect(JSON.stringify(copy.snapshot())).toBe(text);
    // And onlyIfUnset still sees them as set.
    expect(
      copy.apply(asIndex(log.index + 1), {
        type: 'SetRules',
        rules: DEFAULT_LOCK_LIMITS,
        onlyIfUnset: true,
      }).result,
    ).toEqual({ type: 'Stale' });
  });

  it('restores version 2 and 1 snapshots, and unset rules, with its own start rules (its file)', () => {
    const log = new Log();
    log.open(2_000);
    const { rules: _, rulesSetIndex: __, carriedOver: ___, ...rest } = log.sm.snapshot();
    const v2 = { ...rest, version: 2 as const };
    const v1 = { ...rest, version: 1 as const, locks: [], dedupe: [] };
    // Before version 3 each node applied its file's rules; a version 3 snapshot taken
    // before any SetRules holds none, so two nodes' snapshots at one index agree.
    const unset = log.sm.snapshot();
    expect(unset.rules).toBeNull();
    for (const old of [v2, v1, unset]) {
      const copy = new LockStateMachine(RULES);
      copy.restore(old);
      expect(copy.rules).toEqual(RULES);
      expect(copy.rulesSetIndex).toBeNull();
      expect(copy.snapshot().version).toBe(3);
      expect(copy.snapshot().rules).toBeNull();
    }
  });

  it('applies its start rules until a SetRules applies', () => {
    const log = new Log(RULES);
    expect(log.sm.rulesSetIndex).toBeNull();
    expect(log.open(300)).toBe(log.index); // below the default minimum, within RULES
    expect(setRules(log, DEFAULT_LOCK_LIMITS).type).toBe('RulesSet');
    expectRejected(
      log.apply({ type: 'OpenSession', ttlMs: 300, clientName: 'c', requestId: 'after' }),
      'invalidArgument',
      'ttlMs',
      '1000',
    );
  });

  it('refuses a snapshot whose rules are invalid, or rules without their index', () => {
    const snapshot: LockSnapshot = { ...new LockStateMachine().snapshot() };
    const broken = {
      ...snapshot,
      rules: { ...DEFAULT_LOCK_LIMITS, locksMax: 0 },
      rulesSetIndex: 1,
    };
    expect(() => new LockStateMachine().restore(broken)).toThrow(/rules are invalid: locksMax/);
    const unindexed = { ...snapshot, rules: DEFAULT_LOCK_LIMITS };
    expect(() => new LockStateMachine().restore(unindexed)).toThrow(/both or neither/);
  });
});

describe('lockRulesDifferences', () => {
  it('names each differing field with both values, in the order of LockLimits', () => {
    expect(lockRulesDifferences(DEFAULT_LOCK_LIMITS, RULES)).toEqual([
      { field: 'sessionTtlMsMin', ours: 1_000, theirs: 200 },
      { field: 'sessionTtlMsMax', ours: 300_000, theirs: 5_000 },
      { field: 'lockDelayMs', ours: 0, theirs: 700 },
      { field: 'dedupeWindowMax', ours: 100_000, theirs: 3 },
    ]);
    expect(lockRulesDifferences(RULES, { ...RULES })).toEqual([]);
  });
});

describe('watchLockRules', () => {
  /** The parts of a node the watch uses, driven by hand. */
  function fakeNode() {
    const locks = new LockStateMachine();
    const applied = new Set<AppliedListener>();
    const restored = new Set<RestoredListener>();
    let index = 0;
    return {
      node: {
        locks,
        subscribe: (listener: AppliedListener) => {
          applied.add(listener);
          return () => applied.delete(listener);
        },
        onRestored: (listener: RestoredListener) => {
          restored.add(listener);
          return () => restored.delete(listener);
        },
      },
      apply(command: LockCommand) {
        index += 1;
        const output = locks.apply(asIndex(index), command);
        for (const listener of applied) listener(asIndex(index), output);
      },
      restore(snapshot: LockSnapshot) {
        locks.restore(snapshot);
        index = snapshot.appliedIndex;
        for (const listener of restored) listener(asIndex(index));
      },
    };
  }

  it('reports at start and whenever the rules in force change, naming each difference', () => {
    const fake = fakeNode();
    const reports: LockRulesReport[] = [];
    const stop = watchLockRules(fake.node, RULES, (report) => reports.push(report));
    expect(reports).toEqual([{ kind: 'unset' }]);
    fake.apply({ type: 'SetRules', rules: RULES, onlyIfUnset: true });
    expect(reports.at(-1)).toEqual({ kind: 'agree', setIndex: 1 });
    fake.apply({ type: 'Revoke', lock: 'x', reason: '' });
    fake.apply({ type: 'SetRules', rules: { ...RULES, lockDelayMs: 0 }, onlyIfUnset: true });
    expect(reports).toHaveLength(2);
    fake.apply({ type: 'SetRules', rules: { ...RULES, lockDelayMs: 0 }, onlyIfUnset: false });
    const last = reports.at(-1);
    expect(last).toEqual({
      kind: 'differ',
      setIndex: 4,
      differences: [{ field: 'lockDelayMs', ours: 700, theirs: 0 }],
    });
    if (last?.kind === 'differ') {
      expect(describeDifferences(last.differences)).toBe('lock.lockDelayMs file 700, log 0');
    }
    // A snapshot from the leader with other rules is reported too.
    const leader = new LockStateMachine();
    leader.apply(asIndex(9), { type: 'SetRules', rules: RULES, onlyIfUnset: false });
    fake.restore(leader.snapshot());
    expect(reports.at(-1)).toEqual({ kind: 'agree', setIndex: 9 });
    stop();
    fake.apply({ type: 'SetRules', rules: DEFAULT_LOCK_LIMITS, onlyIfUnset: false });
    expect(reports).toHaveLength(4);
  });
});

describe('lockTimingProblems', () => {
  it('checks rules from the log against this node’s Raft timing, naming the field', () => {
    const raft = { tickIntervalMs: 100, ...DEFAULT_RAFT_OPTIONS, electionTimeoutTicks: 10 };
    expect(lockTimingProblems(raft, DEFAULT_LOCK_LIMITS)).toEqual([]);
    const problems = lockTimingProblems(raft, { ...DEFAULT_LOCK_LIMITS, sessionTtlMsMin: 700 });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^lock\.sessionTtlMsMin: 700 ms cannot survive a failover/);
  });
});
