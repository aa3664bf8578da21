/**
 * The replicated behaviour version (src/lock/behaviour.ts): how SetBehaviour applies, and
 * what snapshots carry before and after a raise.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_BASE,
  BEHAVIOUR_LATEST,
  BEHAVIOUR_VERSIONED,
  BehaviourUnsupportedError,
  LockStateMachine,
} from '../../src/lock/index.ts';
import type { LogIndex } from '../../src/util/ids.ts';
import { expectRejected, Log } from './lock-log.ts';

/** What binaries from before behaviour versions assert in restore (state-machine.ts then). */
const OLD_BINARY_SNAPSHOT_VERSION_MAX = 3;

describe('SetBehaviour', () => {
  it('raises the version from its entry on, and never lowers it', () => {
    const log = new Log();
    expect(log.sm.behaviour).toBe(BEHAVIOUR_BASE);
    expect(log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_BASE })).toEqual({
      type: 'Stale',
    });
    expect(log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED })).toEqual({
      type: 'BehaviourSet',
      version: BEHAVIOUR_VERSIONED,
    });
    expect(log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_BASE })).toEqual({
      type: 'Stale',
    });
    expect(log.sm.behaviour).toBe(BEHAVIOUR_VERSIONED);
  });

  it('rejects a version that is none, changing nothing, on every binary alike', () => {
    const log = new Log();
    for (const version of [0, -1, 1.5, Number.NaN]) {
      expectRejected(log.apply({ type: 'SetBehaviour', version }), 'invalidArgument', 'version');
    }
    expectRejected(
      log.apply({ type: 'SetBehaviour', version: '2' } as never),
      'invalidArgument',
      'SetBehaviour.version must be a number',
    );
    expect(log.sm.behaviour).toBe(BEHAVIOUR_BASE);
  });

  it('stops, changing nothing, on a version this binary does not know', () => {
    for (const [behaviourMax, version] of [
      [BEHAVIOUR_LATEST, BEHAVIOUR_LATEST + 1],
      [BEHAVIOUR_BASE, BEHAVIOUR_VERSIONED],
    ] as const) {
      const sm = new LockStateMachine({}, { behaviourMax });
      sm.apply(1 as LogIndex, {
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: 'c',
        requestId: 'a',
      });
      const before = JSON.stringify(sm.snapshot());
      const apply = () => sm.apply(2 as LogIndex, { type: 'SetBehaviour', version });
      expect(apply).toThrow(BehaviourUnsupportedError);
      expect(apply).toThrow(
        `the entry at index 2 raises the lock behaviour version to ${version}, but this binary applies versions up to ${behaviourMax}`,
      );
      // Not applied: the node stops at this entry and a newer binary applies it on restart.
      expect(sm.lastAppliedIndex).toBe(1);
      expect(JSON.stringify(sm.snapshot())).toBe(before);
    }
  });
});

describe('snapshots and the behaviour version', () => {
  it('stay version 3, as older binaries read, until the raise; then version 4', () => {
    const log = new Log();
    log.open();
    const base = log.sm.snapshot();
    expect(base.version).toBe(3);
    expect(base.version).toBeLessThanOrEqual(OLD_BINARY_SNAPSHOT_VERSION_MAX);
    expect('behaviour' in base).toBe(false);
    log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED });
    const raised = log.sm.snapshot();
    expect(raised).toMatchObject({ version: 4, behaviour: BEHAVIOUR_VERSIONED });
    // The encoder slices the dedupe window last (entry-codec.ts).
    expect(Object.keys(raised).at(-1)).toBe('dedupe');
  });

  it('restore the version: a version 3 at the base, a version 4 at its own', () => {
    for (const raise of [false, true]) {
      const log = new Log();
      log.open();
      if (raise) log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED });
      const text = JSON.stringify(log.sm.snapshot());
      const restored = new LockStateMachine();
      restored.apply(1 as LogIndex, { type: 'SetBehaviour', version: BEHAVIOUR_LATEST });
      restored.restore(JSON.parse(text));
      expect(restored.behaviour).toBe(raise ? BEHAVIOUR_VERSIONED : BEHAVIOUR_BASE);
      expect(JSON.stringify(restored.snapshot())).toBe(text);
    }
  });

  it('a binary that does not know the version refuses the snapshot, changing nothing', () => {
    const log = new Log();
    log.open();
    log.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED });
    const old = new LockStateMachine({}, { behaviourMax: BEHAVIOUR_BASE });
    expect(() => old.restore(log.sm.snapshot())).toThrow(
      `the snapshot at index ${log.index} raises the lock behaviour version to ${BEHAVIOUR_VERSIONED}, but this binary applies versions up to ${BEHAVIOUR_BASE}`,
    );
    expect(old.lastAppliedIndex).toBe(0);
    expect(old.behaviour).toBe(BEHAVIOUR_BASE);
  });
});
