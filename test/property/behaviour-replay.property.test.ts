/**
 * The behaviour version across a raise (src/lock/behaviour.ts): random logs of Acquires,
 * their retries, Withdraws of their attempts and Releases by two sessions on one lock,
 * with a SetBehaviour somewhere in them (or none): the commands where a rule gated on a
 * version would show (a retry told of a grant from memory, 0dbc683, is the base's rule).
 *
 * Checked for every log:
 * - every result equals the reference model's (lock-model.ts) on both sides of the
 *   raise: what clients were told before it is what a binary replaying the log tells;
 * - a replica restored from a snapshot (through JSON, as a node stores it) at a random
 *   entry, then fed the rest, gives the same results and events, and a replica replaying
 *   the whole log from the start the same results: all three end byte-identical;
 * - snapshots stay version 3, which older binaries read, until the raise applied.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { BEHAVIOUR_VERSIONED, type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { comparableResult, LockModel } from './lock-model.ts';

const NUM_RUNS = Number(process.env.DLM_BEHAVIOUR_REPLAY_RUNS ?? 1_000);
const SEED = Number(process.env.DLM_BEHAVIOUR_REPLAY_SEED ?? 20_261_205);

type Acquire = Extract<LockCommand, { type: 'Acquire' }>;

const op = fc.record({
  kind: fc.constantFrom('acquire', 'acquire', 'retry', 'retry', 'withdraw', 'withdraw', 'release'),
  session: fc.nat(1),
  pick: fc.nat(30),
  wait: fc.boolean(),
});

interface Entry {
  readonly command: LockCommand;
  readonly result: string;
}

/** The run's log and its three replicas: as applied, restored mid-way, replayed at the end. */
class Run {
  readonly sm = new LockStateMachine();
  readonly model = new LockModel(new LockStateMachine().rules);
  readonly log: Entry[] = [];
  readonly attempts: { command: Acquire; index: number }[] = [];
  restored: LockStateMachine | null = null;
  sessions: SessionId[] = [];
  requests = 0;

  apply(command: LockCommand): void {
    const index = this.log.length + 1;
    const label = `@${index} ${JSON.stringify(command)}`;
    const output = this.sm.apply(index as LogIndex, command);
    const result = JSON.stringify(output.result);
    this.log.push({ command, result });
    assert.deepStrictEqual(
      comparableResult(output.result),
      this.model.apply(index, command),
      `result of ${label}`,
    );
    this.sm.checkInvariants();
    assert.equal(this.sm.snapshot().version, this.sm.behaviour === 1 ? 3 : 4, 'snapshot version');
    if (this.restored !== null) {
      const theirs = this.restored.apply(index as LogIndex, command);
      assert.equal(JSON.stringify(theirs), JSON.stringify(output), `restored replica at ${label}`);
    }
    if (command.type === 'Acquire') this.attempts.push({ command, index });
    if (output.result.type === 'SessionOpened') this.sessions.push(output.result.sessionId);
  }

  restore(): void {
    const replica = new LockStateMachine();
    replica.restore(JSON.parse(JSON.stringify(this.sm.snapshot())));
    this.restored = replica;
  }

  step(kind: string, session: number, pick: number, wait: boolean): void {
    const command = this.commandFor(kind, this.sessions[session] as SessionId, pick, wait);
    if (command !== null) this.apply(command);
  }

  private commandFor(
    kind: string,
    sessionId: SessionId,
    pick: number,
    wait: boolean,
  ): LockCommand | null {
    const attempt = this.attempts[pick % Math.max(1, this.attempts.length)];
    this.requests += 1;
    switch (kind) {
      case 'acquire':
        return {
          type: 'Acquire',
          lock: 'x',
          sessionId,
          mode: 'exclusive',
          waitMs: wait ? 1_000 : 0,
          // Few ids, so that a session's requests share its grant (re-acquires).
          requestId: `q${this.requests % 4}`,
          owner: 'o',
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
      case 'retry':
        return attempt?.command ?? null;
      case 'withdraw':
        if (attempt === undefined) return null;
        return {
          type: 'Withdraw',
          lock: 'x',
          sessionId: attempt.command.sessionId,
          requestId: attempt.command.requestId,
          attemptIndex: attempt.index as LogIndex,
        };
      default: {
        const held = this.sm.describe('x').holders.find((each) => each.sessionId === sessionId);
        const token = (held?.token ?? pick) as FencingToken;
        return { type: 'Release', lock: 'x', sessionId, token, requestId: `r${this.requests}` };
      }
    }
  }

  /** A replica fed the whole log from the start; all three end byte-identical. */
  checkReplay(): void {
    const replay = new LockStateMachine();
    this.log.forEach(({ command, result }, k) => {
      const replayed = JSON.stringify(replay.apply((k + 1) as LogIndex, command).result);
      assert.equal(replayed, result, `replayed result at ${k + 1}`);
    });
    const snapshot = JSON.stringify(this.sm.snapshot());
    assert.equal(JSON.stringify(replay.snapshot()), snapshot, 'replayed snapshot');
    if (this.restored !== null) {
      assert.equal(JSON.stringify(this.restored.snapshot()), snapshot, 'restored snapshot');
    }
  }
}

describe('the behaviour version across a raise', () => {
  it(`replays every log as first applied, on restored and fresh replicas (${NUM_RUNS} runs)`, () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 60 }),
        // Where the raise goes (past the end: never) and where the replica is restored.
        fc.nat(70),
        fc.nat(70),
        (ops, raiseAt, restoreAt) => {
          const run = new Run();
          for (let k = 0; k < 2; k++) {
            run.apply({ type: 'OpenSession', ttlMs: 10_000, clientName: 'c', requestId: `s${k}` });
          }
          ops.forEach(({ kind, session, pick, wait }, k) => {
            if (k === restoreAt) run.restore();
            if (k === raiseAt) {
              run.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED });
            }
            run.step(kind, session, pick, wait);
          });
          run.checkReplay();
        },
      ),
      { numRuns: NUM_RUNS, seed: SEED },
    );
  });
});
