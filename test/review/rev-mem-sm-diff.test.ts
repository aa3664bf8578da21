/**
 * Review of mem12 (merge 294c14c), the lock state machine side: remembered results now
 * built by `rememberedOf` (one hidden class) and decoded commands given their own strings
 * (entry-codec's withOwnStrings). A differential run of main's state machine against
 * 4e75144's (the commit before the merge, extracted with git archive) on random logs
 * at every behaviour version (1 to 5, and raises in the middle of a log). Main's machine
 * is fed the commands through main's entry codec (encodeEntry -> decodeEntry, so the
 * string copying is on the path), the old one the command objects. After every entry:
 * results, snapshot object and msgpack bytes, requestStatus and attemptsOf must agree.
 * And at random points a twin of main's machine restored from main's snapshot (through
 * the snapshot codec) must go on giving the same answers and snapshots as the machine
 * that applied the whole log (restore changed in the merge: BEHAVIOUR_BASE instead of the
 * version in force). Skipped where 4e75144 is not in the repository.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import {
  decodeEntry,
  decodeLockSnapshot,
  encodeEntry,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';

const BEFORE = '4e75144';
const RUNS = Number(process.env.DLM_MEM_DIFF_RUNS ?? 300);

function extract(): string | null {
  try {
    const dir = mkdtempSync(join(tmpdir(), 'dlm-before-mem-'));
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

const NAMES = ['a', 'b', 'lock-with-a-long-name-0123456789'];
// biome-ignore lint/suspicious/noExplicitAny: two builds of one class, compared field by field
type Machine = any;

function run(Old: new (limits: object) => Machine, seed: number, steps: number): string | null {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const limits = { dedupeWindowMax: 3 + int(6), waitersPerLockMax: 4 };
  const o = new Old(limits);
  const n: Machine = new LockStateMachine(limits);
  let twin: Machine | null = null;
  let idx = 0;
  let version = 1 + int(5);
  const raiseAt = int(steps);
  const raiseTo = version + int(6 - version);
  const sessions: number[] = [];
  const acquires: Machine[] = [];
  const attempts: number[] = [];
  const log: string[] = [];
  const longId = (k: number) => `request-id-long-enough-${k}`;
  const next = (): Machine => {
    const op = int(24);
    const sid = sessions.length > 0 ? pick(sessions) : 1;
    const lock = pick(NAMES);
    const rq = pick([`r${int(12)}`, longId(int(6))]);
    const desc = o.describe(lock);
    const held = desc.holders.find((x: Machine) => x.sessionId === sid);
    const head = desc.waiters[0];
    const owner = pick(['o', 'owner-metadata-long-string']);
    const common = { lock, sessionId: sid, waitMs: pick([0, 1000]), requestId: rq, owner };
    switch (op) {
      case 0:
      case 1:
        return {
          type: 'OpenSession',
          ttlMs: 10000,
          clientName: pick(['c', 'client-name-long-string']),
          requestId: `o${int(4)}`,
        };
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
          permits: 1 + int(2),
          limit: 2,
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
      default:
        return {
          type: 'Campaign',
          ...common,
          value: pick(['v', 'a-campaign-value-long-enough']),
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
    }
  };
  const same = (what: string, x: unknown, y: unknown): string | null => {
    const [a, b] = [JSON.stringify(x), JSON.stringify(y)];
    return a === b
      ? null
      : `${what} differs at ${idx} (seed version ${version})\n${log.slice(-40).join('\n')}\nbefore ${a}\nmain   ${b}`;
  };
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
  const apply = (command: Machine): string | null => {
    idx += 1;
    const proposalId = pick([`p${idx}`, `proposal-id-long-${idx}`]);
    const outcome = (m: Machine, c: Machine): unknown => {
      try {
        return m.apply(idx, c, proposalId);
      } catch (error) {
        return { threw: String(error) };
      }
    };
    // Main's machine gets what main's entry codec hands back.
    const decoded = decodeEntry(encodeEntry({ proposalId, command }));
    const again = decodeEntry(encodeEntry({ proposalId, command }));
    const codec = same('decoded command', { proposalId, command }, decoded);
    if (codec !== null) return codec;
    const ours = outcome(o, command) as Machine;
    const theirs = outcome(n, decoded.command);
    const twins = twin === null ? null : outcome(twin, again.command);
    log.push(`${idx} ${JSON.stringify(command)} -> ${JSON.stringify(ours)}`);
    const problem =
      same('apply', ours, theirs) ??
      (twins === null ? null : same('restored twin apply', theirs, twins)) ??
      same('snapshot', o.snapshot(), n.snapshot()) ??
      same(
        'snapshot bytes',
        hex(encodeLockSnapshot(o.snapshot())),
        hex(encodeLockSnapshot(n.snapshot())),
      ) ??
      (twin === null
        ? null
        : same(
            'restored twin snapshot bytes',
            hex(encodeLockSnapshot(n.snapshot())),
            hex(encodeLockSnapshot(twin.snapshot())),
          ));
    if (problem !== null) return problem;
    if (ours.result?.type === 'SessionOpened') sessions.push(ours.result.sessionId);
    if (command.type === 'Acquire' || command.type === 'AcquireAll') {
      acquires.push(command);
      attempts.push(idx);
    }
    for (const c of acquires) {
      const status = same('requestStatus', o.requestStatus(c), n.requestStatus(c));
      if (status !== null) return status;
      if (twin !== null) {
        const t = same('twin requestStatus', n.requestStatus(c), twin.requestStatus(c));
        if (t !== null) return t;
      }
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
    // Now and then a node restores from main's snapshot (as a follower installing it).
    if (int(10) === 0) {
      twin = new LockStateMachine(limits);
      twin.restore(decodeLockSnapshot(encodeLockSnapshot(n.snapshot())));
    }
    return null;
  };
  if (version > 1) {
    const problem = apply({ type: 'SetBehaviour', version });
    if (problem !== null) return problem;
  }
  for (let k = 0; k < steps; k++) {
    if (k === raiseAt && raiseTo > version) {
      version = raiseTo;
      const problem = apply({ type: 'SetBehaviour', version });
      if (problem !== null) return problem;
    }
    const problem = apply(next());
    if (problem !== null) return problem;
  }
  return null;
}

describe.skipIf(dir === null)(
  'rev-mem: main applies, snapshots and restores as 4e75144 did',
  () => {
    let Old: new (limits: object) => Machine;
    beforeAll(async () => {
      const module = await import(join(dir as string, 'src/lock/index.ts'));
      Old = module.LockStateMachine;
    });

    it(`agrees on ${RUNS} random logs at versions 1 to 5 (with raises), through the entry codec and restores`, () => {
      for (let seed = 1; seed <= RUNS; seed++) {
        const problem = run(Old, seed, 150);
        expect(problem, `seed ${seed}`).toBeNull();
      }
    });

    it('past OPEN_ATTEMPTS_MAX retries (attemptsDropped) main remembers, snapshots and restores as before', () => {
      for (const version of [1, 2, 3, 4, 5]) {
        const o: Machine = new Old({ dedupeWindowMax: 8 });
        const n: Machine = new LockStateMachine({ dedupeWindowMax: 8 });
        let i = 0;
        const both = (command: Machine) => {
          i++;
          const [x, y] = [
            o.apply(i, command, `proposal-${i}-long-id`),
            n.apply(i, command, `proposal-${i}-long-id`),
          ];
          expect(JSON.stringify(y), `v${version} at ${i}`).toBe(JSON.stringify(x));
          expect(Buffer.from(encodeLockSnapshot(n.snapshot())).toString('hex')).toBe(
            Buffer.from(encodeLockSnapshot(o.snapshot())).toString('hex'),
          );
          const twin: Machine = new LockStateMachine({ dedupeWindowMax: 8 });
          twin.restore(decodeLockSnapshot(encodeLockSnapshot(n.snapshot())));
          expect(Buffer.from(encodeLockSnapshot(twin.snapshot())).toString('hex')).toBe(
            Buffer.from(encodeLockSnapshot(n.snapshot())).toString('hex'),
          );
        };
        if (version > 1) both({ type: 'SetBehaviour', version });
        both({ type: 'OpenSession', ttlMs: 10000, clientName: 'c', requestId: 'o1' });
        const s1 = i;
        both({ type: 'OpenSession', ttlMs: 10000, clientName: 'c', requestId: 'o2' });
        const s2 = i;
        const acquire = (sessionId: number, waitMs: number) => ({
          type: 'Acquire',
          lock: 'a',
          sessionId,
          mode: 'exclusive',
          waitMs,
          requestId: 'a-request-id-long-enough',
          owner: 'o',
          maxHoldMs: 0,
          lockDelayMs: 0,
        });
        both(acquire(s1, 0));
        for (let k = 0; k < 20; k++) both(acquire(s2, 1000));
        // The probe reaches what it is about: an attempt dropped past the limit.
        expect(JSON.stringify(n.snapshot().dedupe)).toContain('attemptsDropped');
        both({
          type: 'Release',
          lock: 'a',
          sessionId: s1,
          token: 3 + (version > 1 ? 1 : 0),
          requestId: 'rel',
        });
        for (let k = 0; k < 3; k++) both(acquire(s2, 1000));
      }
    });

    it('the sliced snapshot encoding of main equals the one-piece encoding', async () => {
      const n: Machine = new LockStateMachine({ dedupeWindowMax: 50 });
      for (let i = 1; i <= 40; i++) {
        n.apply(
          i,
          {
            type: 'OpenSession',
            ttlMs: 10000,
            clientName: `client-${i}-long-name`,
            requestId: `o${i}`,
          },
          `p${i}`,
        );
      }
      const whole = encodeLockSnapshot(n.snapshot());
      const sliced = await encodeLockSnapshotInSlices(n.snapshot(), async () => {}, 3);
      expect(Buffer.from(sliced).toString('hex')).toBe(Buffer.from(whole).toString('hex'));
    });
  },
);
