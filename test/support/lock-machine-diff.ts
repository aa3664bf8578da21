import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { encodeLockSnapshot } from '../../src/node/entry-codec.ts';

/**
 * What the differential reviews of the lock state machine (test/review/rev-kinds-gate-diff,
 * rev-mem-sm-diff) share: an older commit's machine extracted with git archive, a
 * seeded log of random commands, and the comparison of that machine with main's after
 * every entry (results and events, snapshot object and msgpack bytes, requestStatus and
 * attemptsOf of every acquire so far, ValidateFence). A review subclasses
 * LockMachineDiff for what it draws differently and what more it compares.
 */

// biome-ignore lint/suspicious/noExplicitAny: two builds of one class, compared field by field
export type Machine = any;
export type MachineClass = new (limits: object) => Machine;

/**
 * src/lock and src/util as they were at `commit`, in a new temporary directory named
 * from `prefix`; null where that commit is not in the repository.
 */
export function extractLockSources(commit: string, prefix: string): string | null {
  return extractSources(commit, prefix, ['src/lock', 'src/util']);
}

/**
 * `paths` as they were at `commit`, in a temporary directory removed once the calling
 * test file's tests are done (call it while the file is collected, at its top level);
 * null without that commit.
 */
export function extractSources(
  commit: string,
  prefix: string,
  paths: readonly string[],
): string | null {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const tar = execFileSync('git', ['archive', commit, ...paths]);
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    return dir;
  } catch {
    return null;
  }
}

/** The LockStateMachine of sources extracted by extractLockSources. */
export async function importLockStateMachine(dir: string): Promise<MachineClass> {
  const module = await import(join(dir, 'src/lock/index.ts'));
  return module.LockStateMachine;
}

/** xorshift32: the same numbers for a seed whatever the machines do. */
export function rng(seed: number): () => number {
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

export interface DiffOptions {
  /** The lock names of the log. */
  readonly names: readonly string[];
  /** The behaviour version a run starts at, drawn after the limits. */
  readonly version: (int: (n: number) => number) => number;
  /** How many of the last log lines a failure shows (all of them if absent). */
  readonly logTail?: number;
  /** Whether a failure names the version in force. */
  readonly showVersion?: boolean;
}

/**
 * One seeded run: the old machine (`old`) and main's (`main`) apply the same random log,
 * and `apply` compares them after every entry; a run answers null, or the first
 * difference with the log so far. The draws of the fields that vary between reviews
 * (request ids, owners, client names, permits, campaign values, proposal ids) are
 * methods a review may override; each draws, in order, exactly what it draws.
 */
export class LockMachineDiff {
  readonly r: () => number;
  readonly limits: { dedupeWindowMax: number; waitersPerLockMax: number };
  readonly old: Machine;
  readonly main: Machine;
  readonly names: readonly string[];
  idx = 0;
  /** The behaviour version in force (AcquireAll is drawn from 4 on). */
  version: number;
  readonly sessions: number[] = [];
  readonly acquires: Machine[] = [];
  /** The index of every acquire applied (Withdraw draws its attemptIndex from them). */
  readonly attempts: number[] = [];
  readonly log: string[] = [];
  /** An integer in [0, n), and an element, drawn from the run's numbers. */
  readonly int = (n: number): number => Math.floor(this.r() * n);
  readonly pick = <T>(xs: readonly T[]): T => xs[this.int(xs.length)] as T;

  constructor(
    Old: MachineClass,
    seed: number,
    private readonly options: DiffOptions,
  ) {
    this.r = rng(seed);
    this.names = options.names;
    this.limits = { dedupeWindowMax: 3 + this.int(6), waitersPerLockMax: 4 };
    this.old = new Old(this.limits);
    this.main = new LockStateMachine(this.limits);
    this.version = options.version(this.int);
  }

  // ------------------------------------------------------------ the log

  protected drawRequestId(): string {
    return `r${this.int(12)}`;
  }

  protected drawOwner(): string {
    return 'o';
  }

  protected drawClientName(): string {
    return 'c';
  }

  protected drawPermits(): number {
    return 1;
  }

  protected drawCampaignValue(): string {
    return 'v';
  }

  protected drawProposalId(): string {
    return `p${this.idx}`;
  }

  /** A random command, of the sessions, names, holders and acquires so far. */
  next(): Machine {
    const { int, pick, sessions, acquires, attempts, names } = this;
    const op = int(24);
    const sid = sessions.length > 0 ? pick(sessions) : 1;
    const lock = pick(names);
    const rq = this.drawRequestId();
    const desc = this.old.describe(lock);
    const held = desc.holders.find((x: Machine) => x.sessionId === sid);
    const head = desc.waiters[0];
    const owner = this.drawOwner();
    const common = { lock, sessionId: sid, waitMs: pick([0, 1000]), requestId: rq, owner };
    switch (op) {
      case 0:
      case 1:
        return {
          type: 'OpenSession',
          ttlMs: 10000,
          clientName: this.drawClientName(),
          requestId: `o${int(4)}`,
        };
      case 2:
        return { type: 'CloseSession', sessionId: sid, requestId: rq };
      case 3: {
        const lastRefreshIndex = this.old.session(sid)?.lastRefreshIndex ?? 0;
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
        if (this.version < 4) return { type: 'KeepAlive', sessionIds: [sid] };
        const chosen = [...names].sort(() => this.r() - 0.5).slice(0, 2 + int(2));
        const locks = chosen.map((l) => ({ lock: l, mode: pick(['exclusive', 'shared']) }));
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
        return { type: 'Promote', lock, afterIndex: this.idx };
      case 20:
        return { type: 'Revoke', lock, reason: 'op' };
      case 21:
        return acquires.length > 0 ? pick(acquires) : { type: 'Revoke', lock, reason: 'op' };
      case 22:
        return {
          type: 'AcquirePermits',
          ...common,
          permits: this.drawPermits(),
          limit: 2,
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
      default:
        return {
          type: 'Campaign',
          ...common,
          value: this.drawCampaignValue(),
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
    }
  }

  // ------------------------------------------------------------ the comparison

  /** Null if `x` and `y` agree as JSON, else the difference with the log so far. */
  same(what: string, x: unknown, y: unknown): string | null {
    const [a, b] = [JSON.stringify(x), JSON.stringify(y)];
    if (a === b) return null;
    const version = this.options.showVersion === true ? ` (seed version ${this.version})` : '';
    const tail = this.options.logTail;
    const log = tail === undefined ? this.log : this.log.slice(-tail);
    return `${what} differs at ${this.idx}${version}\n${log.join('\n')}\nbefore ${a}\nmain   ${b}`;
  }

  /** What `m` answers to the entry, a throw included. */
  outcome(m: Machine, command: Machine, proposalId: string): unknown {
    try {
      return m.apply(this.idx, command, proposalId);
    } catch (error) {
      return { threw: String(error) };
    }
  }

  /** The old machine's outcome and main's, or a difference found before applying. */
  protected applyBoth(
    command: Machine,
    proposalId: string,
  ): { ours: Machine; theirs: unknown } | string {
    return {
      ours: this.outcome(this.old, command, proposalId),
      theirs: this.outcome(this.main, command, proposalId),
    };
  }

  /** The outcomes, then the snapshots. */
  protected compareApplied(ours: unknown, theirs: unknown): string | null {
    return this.same('apply', ours, theirs) ?? this.sameSnapshots();
  }

  /** The snapshot objects, then their msgpack bytes. */
  sameSnapshots(): string | null {
    return (
      this.same('snapshot', this.old.snapshot(), this.main.snapshot()) ??
      this.same('snapshot bytes', hexSnapshot(this.old), hexSnapshot(this.main))
    );
  }

  /** What the machines remember of acquire `c`: its status, then its attempts. */
  protected compareAcquire(c: Machine, proposalId: string): string | null {
    return this.sameRequestStatus(c) ?? this.sameAttemptsOf(c, proposalId);
  }

  sameRequestStatus(c: Machine): string | null {
    return this.same('requestStatus', this.old.requestStatus(c), this.main.requestStatus(c));
  }

  /** attemptsOf under the first proposal id, this entry's, and the first acquire's. */
  sameAttemptsOf(c: Machine, proposalId: string): string | null {
    for (const p of ['p1', proposalId, `p${this.attempts[0]}`]) {
      const found = this.same('attemptsOf', this.old.attemptsOf(c, p), this.main.attemptsOf(c, p));
      if (found !== null) return found;
    }
    return null;
  }

  /** After an entry agreed everywhere (nothing by default). */
  protected afterEntry(): void {}

  /** Applies one entry to both machines and compares them: null, or the difference. */
  apply(command: Machine): string | null {
    this.idx += 1;
    const proposalId = this.drawProposalId();
    const both = this.applyBoth(command, proposalId);
    if (typeof both === 'string') return both;
    const { ours, theirs } = both;
    this.log.push(`${this.idx} ${JSON.stringify(command)} -> ${JSON.stringify(ours)}`);
    const problem = this.compareApplied(ours, theirs);
    if (problem !== null) return problem;
    if (ours.result?.type === 'SessionOpened') this.sessions.push(ours.result.sessionId);
    if (command.type === 'Acquire' || command.type === 'AcquireAll') {
      this.acquires.push(command);
      this.attempts.push(this.idx);
    }
    for (const c of this.acquires) {
      const found = this.compareAcquire(c, proposalId);
      if (found !== null) return found;
    }
    for (const l of this.names) {
      for (const t of [1, 2, 3, this.idx]) {
        const fence = this.same(
          'validateFence',
          this.old.validateFence(l, t),
          this.main.validateFence(l, t),
        );
        if (fence !== null) return fence;
      }
    }
    this.afterEntry();
    return null;
  }

  /** Before step `k` of run (nothing by default): null, or a difference. */
  protected beforeStep(_k: number): string | null {
    return null;
  }

  /** The version set (when above 1), then `steps` random commands. */
  run(steps: number): string | null {
    if (this.version > 1) {
      const problem = this.apply({ type: 'SetBehaviour', version: this.version });
      if (problem !== null) return problem;
    }
    for (let k = 0; k < steps; k++) {
      const raised = this.beforeStep(k);
      if (raised !== null) return raised;
      const problem = this.apply(this.next());
      if (problem !== null) return problem;
    }
    return null;
  }
}

export function hexSnapshot(m: Machine): string {
  return Buffer.from(encodeLockSnapshot(m.snapshot())).toString('hex');
}
