/**
 * Review of issue 17's semaphores and elections (merge db5278c, e9bd982), the gate: "below
 * behaviour version 5 nothing may differ from the release before". A differential run
 * of main's state machine against 74f1785's (the commit before the change, extracted
 * with git archive) on random logs of plain-lock commands at versions 1 to 4: Acquire,
 * AcquireAll, Release, CancelWait, Withdraw, WaitExpired, LockDelayEnded, MaxHoldReached,
 * Promote, Revoke, session ends, exact retries, and the new command types (which must be
 * unknown alike). After every entry: the results and events, the snapshot (object and
 * msgpack bytes), requestStatus and attemptsOf of every acquire, and ValidateFence must
 * agree. HELD (passes on main). Skipped where 74f1785 is not in the repository.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { encodeLockSnapshot } from '../../src/node/entry-codec.ts';

const BEFORE = '74f1785';
const RUNS = Number(process.env.DLM_GATE_DIFF_RUNS ?? 300);

function extract(): string | null {
  try {
    const dir = mkdtempSync(join(tmpdir(), 'dlm-before-kinds-'));
    const tar = execFileSync('git', ['archive', BEFORE, 'src/lock', 'src/util']);
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    return dir;
  } catch {
    return null;
  }
}

const dir = extract();

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4_294_967_296;
  };
}

const NAMES = ['a', 'b', 'c'];
// biome-ignore lint/suspicious/noExplicitAny: two builds of one class, compared field by field
type Machine = any;

function run(Old: new (limits: object) => Machine, seed: number, steps: number): string | null {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const limits = { dedupeWindowMax: 3 + int(6), waitersPerLockMax: 4 };
  const o = new Old(limits);
  const n: Machine = new LockStateMachine(limits);
  let idx = 0;
  const sessions: number[] = [];
  const acquires: Machine[] = [];
  const attempts: number[] = [];
  const log: string[] = [];
  const version = 1 + int(4);
  const next = (): Machine => {
    const op = int(24);
    const sid = sessions.length > 0 ? pick(sessions) : 1;
    const lock = pick(NAMES);
    const rq = `r${int(12)}`;
    const desc = o.describe(lock);
    const held = desc.holders.find((x: Machine) => x.sessionId === sid);
    const head = desc.waiters[0];
    const common = { lock, sessionId: sid, waitMs: pick([0, 1000]), requestId: rq, owner: 'o' };
    switch (op) {
      case 0:
      case 1:
        return { type: 'OpenSession', ttlMs: 10000, clientName: 'c', requestId: `o${int(4)}` };
      case 2:
        return { type: 'CloseSession', sessionId: sid, requestId: rq };
      case 3: {
        const lastRefreshIndex = o.session(sid)?.lastRefreshIndex ?? 0;
        return { type: 'ExpireSession', sessionId: sid, lastRefreshIndex };
      }
      case 4:
        return { type: 'KeepAlive', sessionIds: [sid] };
      case 5:
      case 6:
      case 7: {
        const mode = pick(['exclusive', 'shared']);
        return {
          type: 'Acquire',
          ...common,
          mode,
          maxHoldMs: pick([0, 500]),
          lockDelayMs: pick([0, 100]),
        };
      }
      case 8:
      case 9: {
        if (version < 4) return { type: 'KeepAlive', sessionIds: [sid] };
        const names = [...NAMES].sort(() => r() - 0.5).slice(0, 2 + int(2));
        const locks = names.map((l) => ({ lock: l, mode: pick(['exclusive', 'shared']) }));
        const { lock: _lock, ...rest } = common;
        return { type: 'AcquireAll', ...rest, locks, maxHoldMs: 0, lockDelayMs: pick([0, 100]) };
      }
      case 10:
      case 11:
        return {
          type: 'Release',
          lock,
          sessionId: sid,
          token: held?.token ?? pick([1, 5]),
          requestId: rq,
        };
      case 12:
        return { type: 'CancelWait', lock, sessionId: sid, requestId: rq };
      case 13:
      case 14: {
        const attemptIndex = attempts.length > 0 ? pick(attempts) : 1;
        return { type: 'Withdraw', lock, sessionId: sid, requestId: rq, attemptIndex };
      }
      case 15:
        return {
          type: 'WaitExpired',
          lock,
          sessionId: head?.sessionId ?? sid,
          waiterIndex: head?.requestIndex ?? 1,
        };
      case 16:
        return { type: 'LockDelayEnded', lock, delayIndex: desc.delays[0]?.index ?? 1 };
      case 17: {
        const first = desc.holders[0];
        return {
          type: 'MaxHoldReached',
          lock,
          sessionId: first?.sessionId ?? sid,
          token: first?.token ?? 1,
        };
      }
      case 18:
      case 19:
        return { type: 'Promote', lock, afterIndex: idx };
      case 20:
        return { type: 'Revoke', lock, reason: 'op' };
      case 21:
        return acquires.length > 0 ? pick(acquires) : { type: 'Revoke', lock, reason: 'op' };
      case 22:
        return {
          type: 'AcquirePermits',
          ...common,
          permits: 1,
          limit: 2,
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
      default:
        return { type: 'Campaign', ...common, value: 'v', maxHoldMs: 0, lockDelayMs: 0 };
    }
  };
  const same = (what: string, x: unknown, y: unknown): string | null => {
    const [a, b] = [JSON.stringify(x), JSON.stringify(y)];
    return a === b
      ? null
      : `${what} differs at ${idx}\n${log.join('\n')}\nbefore ${a}\nmain   ${b}`;
  };
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
  const apply = (command: Machine): string | null => {
    idx += 1;
    const proposalId = `p${idx}`;
    const outcome = (m: Machine): unknown => {
      try {
        return m.apply(idx, command, proposalId);
      } catch (error) {
        return { threw: String(error) };
      }
    };
    const [ours, theirs] = [outcome(o) as Machine, outcome(n)];
    log.push(`${idx} ${JSON.stringify(command)} -> ${JSON.stringify(ours)}`);
    const problem =
      same('apply', ours, theirs) ??
      same('snapshot', o.snapshot(), n.snapshot()) ??
      same(
        'snapshot bytes',
        hex(encodeLockSnapshot(o.snapshot())),
        hex(encodeLockSnapshot(n.snapshot())),
      );
    if (problem !== null) return problem;
    if (ours.result?.type === 'SessionOpened') sessions.push(ours.result.sessionId);
    if (command.type === 'Acquire' || command.type === 'AcquireAll') {
      acquires.push(command);
      attempts.push(idx);
    }
    for (const c of acquires) {
      const status = same('requestStatus', o.requestStatus(c), n.requestStatus(c));
      if (status !== null) return status;
      for (const p of ['p1', proposalId, `p${attempts[0]}`]) {
        const found = same('attemptsOf', o.attemptsOf(c, p), n.attemptsOf(c, p));
        if (found !== null) return found;
      }
    }
    for (const l of NAMES) {
      for (const t of [1, 2, 3, idx]) {
        const fence = same('validateFence', o.validateFence(l, t), n.validateFence(l, t));
        if (fence !== null) return fence;
      }
    }
    return null;
  };
  if (version > 1) {
    const problem = apply({ type: 'SetBehaviour', version });
    if (problem !== null) return problem;
  }
  for (let k = 0; k < steps; k++) {
    const problem = apply(next());
    if (problem !== null) return problem;
  }
  return null;
}

describe.skipIf(dir === null)('rev-kinds gate: below version 5 main applies as 74f1785 did', () => {
  let Old: new (limits: object) => Machine;
  beforeAll(async () => {
    const module = await import(join(dir as string, 'src/lock/index.ts'));
    Old = module.LockStateMachine;
  });

  it(`agrees on ${RUNS} random logs at versions 1 to 4`, () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const problem = run(Old, seed, 120);
      expect(problem, `seed ${seed}`).toBeNull();
    }
  });
});
