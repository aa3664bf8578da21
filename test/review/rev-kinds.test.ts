/**
 * Review of issue 17's semaphores and elections (merge db5278c, e9bd982): interleavings
 * in which the lock state machine tells a client something untrue. Each test here FAILS
 * on main (e9bd982) and passes once the flaw is fixed. Attacks that held are in
 * rev-kinds-probes.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  type LockCommand,
  type LockResult,
  LockStateMachine,
} from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { KindLog, tokenOf } from '../lock/kinds-log.ts';

function proclaimCommand(
  sessionId: SessionId,
  lock: string,
  token: number,
  value: string,
  requestId: string,
): LockCommand {
  return { type: 'Proclaim', lock, sessionId, token: token as FencingToken, value, requestId };
}

describe('rev-kinds F1: a Proclaim retry is told Proclaimed after the term it proclaimed in ended', () => {
  /**
   * Interleaving: A leads election "e" (token ta). A sends Proclaim{p1, ta, "mine"}; it
   * applies, but the reply is lost (leader change, timeout). Before A's client library
   * retries p1 (same request id, as it does on UNAVAILABLE), A's term ends while A's
   * session lives on: an operator's Revoke (or MaxHoldReached), and B, the waiting
   * candidate, becomes leader with token tb > ta and value "b". The retry of p1 applies.
   *
   * Told: `Proclaimed {token: ta, value: "mine"}`, i.e. "the leader's new value is in
   * force" (types.ts) and, to A, "you lead with ta". Untrue now: B leads with "b", ta is
   * no longer valid (ValidateFence), and a fresh Proclaim with ta is refused notHolder.
   * answerRetry's own rule is "told only what is still true: the first result when
   * that still holds, else what became of the request"; an Acquire's retry gets
   * grantEnded in the same position, and a Proclaim's retry after its session ended
   * gets sessionNotFound. Only the term's end, with the session alive, slips through,
   * because Proclaim is answered like Release (whose "Released" stays true), but
   * "Proclaimed" does not stay true once the term is over.
   */
  it('after a Revoke handed the election to another leader', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    const ta = tokenOf(log.campaign(a, 'e', 'a0'));
    expect(log.campaign(b, 'e', 'b')).toMatchObject({ type: 'Queued', position: 0 });
    const p1 = proclaimCommand(a, 'e', ta, 'mine', 'p1');
    expect(log.apply(p1)).toMatchObject({ type: 'Proclaimed', token: ta }); // reply lost
    log.apply({ type: 'Revoke', lock: 'e', reason: 'operator' });
    const tb = log.sm.describe('e').holders[0]?.token ?? 0;
    expect(log.sm.describe('e').holders).toMatchObject([{ sessionId: b, value: 'b' }]);
    expect(tb).toBeGreaterThan(ta);
    expect(log.sm.validateFence('e', ta as FencingToken).valid).toBe(false);
    // A fresh Proclaim with ta is refused: A does not lead.
    expect(log.apply(proclaimCommand(a, 'e', ta, 'mine', 'p2'))).toMatchObject({
      type: 'Rejected',
      code: 'notHolder',
    });

    const retry = log.apply(p1);
    // Told "Proclaimed, your value is in force under token ta": B leads with "b".
    expect(retry.type).not.toBe('Proclaimed');
  });

  it('after MaxHoldReached ended the term and the same session won again (new token)', () => {
    // The retry names the old term's token ta; A leads again now, but under tb, with
    // its new campaign's value. Told Proclaimed {ta, "mine"}: neither is in force.
    const log = new KindLog();
    const a = log.open();
    const ta = tokenOf(log.campaign(a, 'e', 'first', { maxHoldMs: 1_000 }));
    const p1 = proclaimCommand(a, 'e', ta, 'mine', 'p1');
    log.apply(p1); // reply lost
    log.apply({ type: 'MaxHoldReached', lock: 'e', sessionId: a, token: ta as FencingToken });
    const tb = tokenOf(log.campaign(a, 'e', 'second'));
    expect(tb).toBeGreaterThan(ta);
    expect(log.sm.describe('e').holders).toMatchObject([{ token: tb, value: 'second' }]);

    const retry: LockResult = log.apply(p1);
    expect(retry).not.toEqual({ type: 'Proclaimed', lock: 'e', token: ta, value: 'mine' });
  });
});

/** One-grant-per-entry broken: an entry may grant two permits of one semaphore. */
class TwoGrantsPerEntry extends LockStateMachine {
  protected override grantsPerEntryPerLockMax(): number {
    return 2;
  }
}

describe('rev-kinds F2: checkInvariants does not see two permits sharing one token', () => {
  /**
   * "Each grant its own fencing token" rests on one rule (grantsPerEntryPerLockMax): an
   * entry grants at most one holder per name. Broken, a Revoke (or a session end) that
   * frees a semaphore lets one entry grant two queued permit requests, both with the
   * entry's index as token. Then when one of them releases, ValidateFence still calls
   * its token valid (the other permit has it): a paused client fenced by that token is
   * let through although its permit ended. The semaphore test's teeth cover the limit
   * and the leader count; checkInvariants has no check that a name's current grants
   * have distinct tokens, so this broken machine passes it after every command.
   */
  it('catches two current grants of one semaphore with the same token', () => {
    const sm = new TwoGrantsPerEntry();
    const shadow = new KindLog();
    let index = 0;
    const apply = (command: LockCommand): LockResult => {
      index += 1;
      const { result } = sm.apply(index as LogIndex, command);
      sm.checkInvariants();
      return result;
    };
    apply({ type: 'SetBehaviour', version: BEHAVIOUR_SEMAPHORES_ELECTIONS });
    const open = (): SessionId => {
      const r = apply({
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId: `o${index}`,
      });
      if (r.type !== 'SessionOpened') throw new Error(JSON.stringify(r));
      return r.sessionId;
    };
    const [a, b, c] = [open(), open(), open()];
    const run = (): void => {
      apply(shadow.permitsCommand(a, 's', 2, 2));
      apply(shadow.permitsCommand(b, 's', 1, 2));
      apply(shadow.permitsCommand(c, 's', 1, 2));
      apply({ type: 'Revoke', lock: 's', reason: 'operator' }); // frees a's 2 permits: b and c granted here
    };
    expect(run).toThrow(/two grants with one token/);
    // What the broken rule did, which the invariant caught: b and c share the Revoke's index.
    const tokens = sm.describe('s').holders.map((holder) => holder.token);
    expect(new Set(tokens).size).toBeLessThan(tokens.length);
  });
});

describe('rev-kinds F3 (resource, not an untrue answer): an ended candidacy remembers the leader value', () => {
  /**
   * A candidate whose wait ends (WaitExpired, CancelWait) has its remembered Queued
   * rewritten to NotAcquired with the election's holders, and toRemember strips holders
   * only from Acquired: so every such entry in the dedupe window (default 100,000) and
   * in every snapshot keeps the leader's value, up to electionValueBytesMax (4 KiB by
   * default, 64 KiB ceiling): 400 MB to 6.5 GB of state at the window's default size,
   * never read. retriedAcquire answers a remembered NotAcquired with
   * notAcquired(first.lock), today's holders, and requestNow ignores it. (The same
   * holds of a semaphore's holders, up to its limit, and, before this change, of a
   * shared lock's owners; the election value is the new, large part.)
   */
  it('a remembered NotAcquired of an election does not carry the leader value', () => {
    const log = new KindLog();
    const [a, b] = [log.open(), log.open()];
    tokenOf(log.campaign(a, 'e', 'V'.repeat(4_096)));
    log.apply(log.campaignCommand(b, 'e', 'w', { requestId: 'c1' }));
    const waiter = log.sm.describe('e').waiters[0];
    log.apply({
      type: 'WaitExpired',
      lock: 'e',
      sessionId: b,
      waiterIndex: waiter?.requestIndex as LogIndex,
    });
    const remembered = log.sm.snapshot().dedupe.find(([key]) => key.endsWith('/c1'));
    expect(remembered?.[1].result.type).toBe('NotAcquired');
    expect(JSON.stringify(remembered).length).toBeLessThan(1_024);
  });
});
