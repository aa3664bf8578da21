import type { LinOp, LockMode, Outcome } from '../../src/tools/jepsen/linearizability/index.ts';

/**
 * Histories for testing the linearizability checker: correct sequential runs of a lock
 * service as the README promises it, widened into concurrent histories, and mutations
 * of them that no correct service could produce.
 */
export type CommandKind =
  | 'open'
  | 'validate'
  | 'keepAlive'
  | 'acquire'
  | 'release'
  | 'close'
  | 'idle';

export interface Command {
  readonly kind: CommandKind;
  readonly session: number;
  readonly lock: number;
  readonly shared: boolean;
  /** Time from the previous linearization point to this one. */
  readonly stepMs: number;
  /** How far the recorded call starts before, and answers after, its linearization point. */
  readonly widenBeforeMs: number;
  readonly widenAfterMs: number;
  /** Turn an `ok` into `info`: the effect happened, the answer was lost. */
  readonly unknown: boolean;
  /** Gap added between two grants' tokens (log indexes used by other entries). */
  readonly tokenGap: number;
}

export interface RunShape {
  readonly ttlMs: readonly number[];
  readonly commands: readonly Command[];
}

/** An expiry the simulated service applied, and the holds it ended. */
export interface Expiry {
  readonly session: string;
  readonly atMs: number;
  readonly holds: readonly FreedHold[];
}

export interface FreedHold {
  readonly lock: string;
  readonly mode: LockMode;
  /** Whether the acquire that made the grant was answered (its token is in the history). */
  readonly answered: boolean;
}

export interface GeneratedRun {
  readonly ops: LinOp[];
  readonly expiries: readonly Expiry[];
  /** The linearization point of each op, by id. */
  readonly pointMs: ReadonlyMap<number, number>;
  readonly endMs: number;
}

interface SimSession {
  id: string;
  readonly ttlMs: number;
  alive: boolean;
  lastRefreshMs: number;
}

interface SimHold {
  readonly token: number;
  readonly mode: LockMode;
  readonly answered: boolean;
}

/** Runs the commands through a simulated correct service, one at a time. */
export function generateRun(shape: RunShape): GeneratedRun {
  const sim = new SimService(shape.ttlMs);
  for (const command of shape.commands) sim.run(command);
  return { ops: sim.ops, expiries: sim.expiries, pointMs: sim.pointMs, endMs: sim.nowMs + 100 };
}

class SimService {
  readonly ops: LinOp[] = [];
  readonly expiries: Expiry[] = [];
  readonly pointMs = new Map<number, number>();
  nowMs = 0;
  private readonly sessions: SimSession[];
  /** lock → session → hold */
  private readonly locks = new Map<string, Map<string, SimHold>>();
  private lastToken = 0;
  private sessionsOpened = 100;

  constructor(ttlMs: readonly number[]) {
    this.sessions = ttlMs.map((ttl, i) => ({
      id: `s${i}`,
      ttlMs: ttl,
      alive: true,
      lastRefreshMs: 0,
    }));
    for (const session of this.sessions) {
      this.nowMs += 1;
      session.lastRefreshMs = this.nowMs;
      this.record(
        this.nowMs,
        { type: 'openSession', session: session.id, ttlMs: session.ttlMs },
        'ok',
        0,
        0,
        false,
      );
    }
  }

  /** A client whose session ended opens a new one (a new id) in its slot. */
  private reopen(session: SimSession, command: Command): void {
    if (session.alive) return;
    this.sessionsOpened++;
    session.id = `s${this.sessionsOpened}`;
    session.alive = true;
    session.lastRefreshMs = this.nowMs;
    this.emit(command, { type: 'openSession', session: session.id, ttlMs: session.ttlMs }, 'ok');
  }

  run(command: Command): void {
    this.nowMs += command.stepMs;
    this.expireDue();
    const session = this.sessions[command.session % this.sessions.length] as SimSession;
    const lock = `L${command.lock}`;
    switch (command.kind) {
      case 'open':
        this.reopen(session, command);
        break;
      case 'keepAlive':
        this.keepAlive(session, command);
        break;
      case 'validate':
        this.validate(session, lock, command);
        break;
      case 'acquire':
        this.emit(command, ...this.acquire(session, lock, command));
        break;
      case 'release':
        this.release(session, lock, command);
        break;
      case 'close':
        this.close(session, command);
        break;
      case 'idle':
        break;
    }
  }

  /** The service expires a lease only once its full TTL has run since the refresh applied. */
  private expireDue(): void {
    for (const session of this.sessions) {
      if (!session.alive || session.lastRefreshMs + session.ttlMs > this.nowMs) continue;
      session.alive = false;
      this.expiries.push({
        session: session.id,
        atMs: this.nowMs,
        holds: this.dropHolds(session.id),
      });
      this.nowMs += 1; // the expiry takes its own instant; the next op comes after it
    }
  }

  /** Asks about a token granted at some point (the latest, or an older one). */
  private validate(session: SimSession, lock: string, command: Command): void {
    const token = Math.max(1, this.lastToken - command.tokenGap);
    const valid = [...this.holdsOf(lock).values()].some((h) => h.token === token);
    this.emit(command, { type: 'validateFence', session: session.id, lock, token, valid }, 'ok');
  }

  private keepAlive(session: SimSession, command: Command): void {
    if (session.alive) session.lastRefreshMs = this.nowMs;
    this.emit(command, { type: 'keepAlive', session: session.id }, session.alive ? 'ok' : 'fail');
  }

  private acquire(session: SimSession, lock: string, command: Command): [OpBody, Outcome] {
    const mode: LockMode = command.shared ? 'shared' : 'exclusive';
    const base = { type: 'acquire' as const, session: session.id, lock, mode };
    if (!session.alive) return [{ ...base, failCode: 'sessionGone' }, 'fail'];
    const holds = this.holdsOf(lock);
    const own = holds.get(session.id);
    if (own !== undefined) {
      if (own.mode !== mode) return [{ ...base, failCode: 'other' }, 'fail'];
      return [{ ...base, token: own.token }, 'ok'];
    }
    const blocked = [...holds.values()].some((h) => h.mode === 'exclusive' || mode === 'exclusive');
    if (blocked) return [{ ...base, failCode: 'busy' }, 'fail'];
    this.lastToken += 1 + command.tokenGap;
    holds.set(session.id, { token: this.lastToken, mode, answered: !command.unknown });
    return [{ ...base, token: this.lastToken }, 'ok'];
  }

  private release(session: SimSession, lock: string, command: Command): void {
    const holds = this.holdsOf(lock);
    const own = session.alive ? holds.get(session.id) : undefined;
    // A refused release names a token the session held once, or one no grant had.
    const token = own?.token ?? Math.max(0, this.lastToken - command.tokenGap);
    if (own !== undefined) holds.delete(session.id);
    this.emit(command, { type: 'release', session: session.id, lock, token }, own ? 'ok' : 'fail');
  }

  private close(session: SimSession, command: Command): void {
    const wasAlive = session.alive;
    if (wasAlive) {
      session.alive = false;
      this.dropHolds(session.id);
    }
    this.emit(command, { type: 'closeSession', session: session.id }, wasAlive ? 'ok' : 'fail');
  }

  private holdsOf(lock: string): Map<string, SimHold> {
    let holds = this.locks.get(lock);
    if (holds === undefined) {
      holds = new Map();
      this.locks.set(lock, holds);
    }
    return holds;
  }

  private dropHolds(session: string): FreedHold[] {
    const freed: FreedHold[] = [];
    for (const [lock, holds] of this.locks) {
      const hold = holds.get(session);
      if (hold === undefined) continue;
      holds.delete(session);
      freed.push({ lock, mode: hold.mode, answered: hold.answered });
    }
    return freed;
  }

  private emit(command: Command, body: OpBody, outcome: Outcome): void {
    this.record(
      this.nowMs,
      body,
      outcome,
      command.widenBeforeMs,
      command.widenAfterMs,
      command.unknown,
    );
    this.nowMs += 1;
  }

  private record(
    pointMs: number,
    body: OpBody,
    outcome: Outcome,
    beforeMs: number,
    afterMs: number,
    unknown: boolean,
  ): void {
    const id = this.ops.length;
    const lost = unknown && outcome === 'ok';
    const { token, ...rest } = body as OpBody & { token?: number };
    const op = {
      ...rest,
      ...(token !== undefined && !lost ? { token } : {}),
      ...(body.type === 'release' || body.type === 'validateFence'
        ? { token: token as number }
        : {}),
      id,
      client: `c-${body.session}`,
      invokeMs: pointMs - beforeMs,
      completeMs: lost ? null : pointMs + afterMs,
      outcome: lost ? 'info' : outcome,
    } as LinOp;
    this.ops.push(op);
    this.pointMs.set(id, pointMs);
  }
}

type OpBody =
  | { type: 'openSession'; session: string; ttlMs: number }
  | { type: 'keepAlive'; session: string }
  | { type: 'closeSession'; session: string }
  | {
      type: 'acquire';
      session: string;
      lock: string;
      mode: LockMode;
      token?: number;
      failCode?: 'busy' | 'sessionGone' | 'other';
    }
  | { type: 'release'; session: string; lock: string; token: number }
  | { type: 'validateFence'; session: string; lock: string; token: number; valid: boolean };

// ---------------------------------------------------------------------------------------
// Mutations: each appends or changes ops so that no linearization can exist.

function nextId(ops: readonly LinOp[]): number {
  return ops.reduce((max, op) => Math.max(max, op.id), -1) + 1;
}

function lastTimeMs(ops: readonly LinOp[]): number {
  return ops.reduce((max, op) => Math.max(max, op.completeMs ?? op.invokeMs), 0);
}

function okGrants(ops: readonly LinOp[]): (LinOp & { type: 'acquire'; token: number })[] {
  return ops.filter(
    (op): op is LinOp & { type: 'acquire'; token: number } =>
      op.type === 'acquire' && op.outcome === 'ok' && op.token !== undefined,
  );
}

/** A fresh session is granted a lock with a token no higher than one granted before. */
export function mutateTokenNotAbove(run: GeneratedRun, pick: number): LinOp[] | null {
  const grants = okGrants(run.ops);
  const victim = grants[pick % Math.max(1, grants.length)];
  if (victim === undefined) return null;
  const highest = Math.max(...grants.filter((g) => g.lock === victim.lock).map((g) => g.token));
  const atMs = lastTimeMs(run.ops) + 10;
  const session = 'z-token';
  return [
    ...run.ops,
    {
      id: nextId(run.ops),
      type: 'acquire',
      client: 'cz',
      session,
      lock: victim.lock,
      mode: 'exclusive',
      token: highest - (pick % 2),
      invokeMs: atMs,
      completeMs: atMs + 1,
      outcome: 'ok',
    },
  ];
}

/** A session that never held a lock is told its release of it succeeded. */
export function mutateReleaseNotHeld(run: GeneratedRun, pick: number): LinOp[] | null {
  const grants = okGrants(run.ops);
  const victim = grants[pick % Math.max(1, grants.length)];
  if (victim === undefined) return null;
  const atMs = (run.pointMs.get(victim.id) ?? 0) + (pick % 5);
  return [
    ...run.ops,
    {
      id: nextId(run.ops),
      type: 'release',
      client: 'cz',
      session: 'z-release',
      lock: victim.lock,
      token: victim.token,
      invokeMs: atMs,
      completeMs: atMs + 1,
      outcome: 'ok',
    },
  ];
}

/** Two sessions are granted one lock exclusively, one after the other, with no release and no expiry possible between. */
export function mutateOverlappingExclusive(run: GeneratedRun, pick: number): LinOp[] {
  const lock = `L${pick % 2}`;
  const top = Math.max(0, ...okGrants(run.ops).map((g) => g.token));
  const atMs = lastTimeMs(run.ops) + 10;
  const id = nextId(run.ops);
  const open = (i: number, session: string): LinOp => ({
    id: id + i,
    type: 'openSession',
    client: session,
    session,
    ttlMs: 10_000,
    invokeMs: atMs,
    completeMs: atMs + 1,
    outcome: 'ok',
  });
  return [
    ...run.ops,
    open(0, 'zx'),
    open(1, 'zy'),
    {
      id: id + 2,
      type: 'acquire',
      client: 'zx',
      session: 'zx',
      lock,
      mode: 'exclusive',
      token: top + 1,
      invokeMs: atMs + 2,
      completeMs: atMs + 3,
      outcome: 'ok',
    },
    {
      id: id + 3,
      type: 'acquire',
      client: 'zy',
      session: 'zy',
      lock,
      mode: pick % 3 === 0 ? 'shared' : 'exclusive',
      token: top + 2,
      invokeMs: atMs + 4,
      completeMs: atMs + 5,
      outcome: 'ok',
    },
  ];
}

/**
 * A holder's hold ended by expiry and another session was then granted the lock; the
 * mutation adds an acknowledged keepalive of the holder begun just before that grant,
 * so its lease could not have run out by the time the grant was answered.
 */
export function mutateLeaseStillLive(run: GeneratedRun, pick: number): LinOp[] | null {
  const candidates: { expiry: Expiry; grantPointMs: number }[] = [];
  for (const expiry of run.expiries) {
    for (const grant of okGrants(run.ops)) {
      const pointMs = run.pointMs.get(grant.id) ?? 0;
      // The holder's grant is in the history, and conflicts with the later one.
      const conflicting = expiry.holds.some(
        (h) =>
          h.lock === grant.lock &&
          h.answered &&
          (h.mode === 'exclusive' || grant.mode === 'exclusive'),
      );
      if (grant.session !== expiry.session && conflicting && pointMs > expiry.atMs) {
        candidates.push({ expiry, grantPointMs: pointMs });
      }
    }
  }
  const chosen = candidates[pick % Math.max(1, candidates.length)];
  if (chosen === undefined) return null;
  const session = chosen.expiry.session;
  const invokeMs = chosen.grantPointMs - 0.5;
  return [
    ...run.ops,
    {
      id: nextId(run.ops),
      type: 'keepAlive',
      client: `c-${session}`,
      session,
      invokeMs,
      completeMs: invokeMs + 0.25,
      outcome: 'ok',
    },
  ];
}

// ---------------------------------------------------------------------------------------
// Truthful rewrites: each keeps the history one a correct service could produce.

/**
 * Some grants that their session released, with no other op of that session on the lock
 * in between, told `grantEnded` instead: as if the grant's answer had been lost, the
 * grant withdrawn at the release's point, and the client's retry answered when the
 * release was. The acquire's interval is stretched to the release's answer and the
 * release dropped, so the grant and its end both lie within it (others were refused by
 * the grant meanwhile, as in the real run of seed 779330080). Which grants: every one
 * that qualifies (even `pick`) or every other one from the first (odd). Null when none
 * qualifies.
 */
export function endGrantsBeforeAnswer(run: GeneratedRun, pick: number): LinOp[] | null {
  const rewritten = new Map<number, LinOp | null>();
  let qualifying = 0;
  run.ops.forEach((op, i) => {
    if (op.type !== 'acquire' || op.outcome !== 'ok' || rewritten.has(op.id)) return;
    const next = run.ops
      .slice(i + 1)
      .find(
        (later) =>
          later.session === op.session &&
          (later.type === 'acquire' || later.type === 'release') &&
          later.lock === op.lock,
      );
    if (next?.type !== 'release' || next.outcome !== 'ok' || next.token !== op.token) return;
    if (qualifying++ % (1 + (pick % 2)) !== 0) return;
    const { token: _token, ...acquire } = op;
    rewritten.set(op.id, {
      ...acquire,
      outcome: 'fail',
      failCode: 'grantEnded',
      completeMs: next.completeMs,
    });
    rewritten.set(next.id, null);
  });
  if (rewritten.size === 0) return null;
  return run.ops.flatMap((op) => {
    const changed = rewritten.get(op.id);
    if (changed === undefined) return [op];
    return changed === null ? [] : [changed];
  });
}
