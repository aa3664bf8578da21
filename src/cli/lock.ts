import { spawn } from 'node:child_process';
import { constants, hostname } from 'node:os';
import {
  type DlmClient,
  DlmClientError,
  type LockHandle,
  LockNotAcquiredError,
  NotElectedError,
  type Session,
  SessionLostError,
} from '../client/index.ts';
import type { CliIo, ElectCommand, HoldingCommand, LockCommand } from './cli.ts';
import { exitNotAcquired, exitSessionLost, lockSafetyMarginMs } from './cli.ts';
import { connect, withinTimeout } from './describe.ts';

/**
 * `dlm lock NAME [NAME...] [options] -- CMD [ARGS...]`: opens a session, takes NAME (or
 * every NAME at once, all or none, under one token), runs CMD with the fencing token in
 * its environment, and releases them when CMD exits.
 *
 * The session's signal fires at its safe deadline: the send time of the last keepalive
 * the cluster confirmed, plus the TTL, less the margin. Here the margin is the kill
 * grace plus max(500, ttl/10) (lockSafetyMarginMs), so when keepalives stop getting
 * through, CMD's process group gets SIGTERM, then SIGKILL after the grace, and is dead
 * before the lease can end on the cluster. CMD runs in a process group (and session)
 * of its own so that the kill reaches whatever it started too; the signals dlm lock
 * itself gets (SIGINT, SIGTERM, SIGHUP) are passed on to that group.
 */
const RELAYED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** How long closing the session may take once dlm lock has decided to stop. */
const CLOSE_BUDGET_MS = 1_000;

export async function runLock(command: LockCommand, io: CliIo): Promise<number> {
  return runHolding(command, lockGrant(command), io);
}

/**
 * `dlm elect NAME VALUE [options] -- CMD [ARGS...]`: campaigns to lead NAME with VALUE,
 * runs CMD while this session leads, with the term's fencing token in its environment,
 * and resigns when CMD exits. Everything else (waiting, signals, stopping CMD before the
 * lease can end, exit codes) is dlm lock's: leadership is a grant like a lock's.
 */
export async function runElect(command: ElectCommand, io: CliIo): Promise<number> {
  return runHolding(command, electGrant(command), io);
}

/** What a command holding a grant takes, and how CMD and the messages name it. */
interface GrantSpec {
  /** The command, as messages start: `dlm lock`, `dlm elect`. */
  readonly tool: string;
  /** What is held, as messages name it. */
  readonly what: string;
  readonly take: (session: Session, owner: string) => Promise<LockHandle>;
  /** CMD's environment besides the fencing token and the session id. */
  readonly env: (handle: LockHandle) => Readonly<Record<string, string>>;
}

function lockGrant(command: LockCommand): GrantSpec {
  const what = namesOf(command);
  const mode = command.shared ? 'SHARED' : 'EXCLUSIVE';
  return {
    tool: 'dlm lock',
    what,
    take: (session, owner) => {
      const waiting = { waitMs: command.waitMs, owner };
      if (command.semaphore !== null) {
        const { limit, permits } = command.semaphore;
        return session.semaphore(command.lock, limit).acquire({ permits, ...waiting });
      }
      // Several names are taken as one set (all or none, one token): taking them one by
      // one could deadlock with another dlm lock naming them in another order.
      return command.locks.length > 1
        ? session.acquireAll(
            command.locks.map((name) => ({ name, mode })),
            waiting,
          )
        : session.acquire(command.lock, { mode, ...waiting });
    },
    env: () => ({
      DLM_LOCK: command.lock,
      ...(command.locks.length > 1 ? { DLM_LOCKS: JSON.stringify(command.locks) } : {}),
      ...(command.semaphore === null
        ? {}
        : {
            DLM_PERMITS: String(command.semaphore.permits),
            DLM_LIMIT: String(command.semaphore.limit),
          }),
    }),
  };
}

function electGrant(command: ElectCommand): GrantSpec {
  return {
    tool: 'dlm elect',
    what: `the leadership of ${command.election}`,
    take: (session, owner) =>
      session.campaign(command.election, command.value, { waitMs: command.waitMs, owner }),
    // DLM_LEADER_TOKEN says what the token is; DLM_FENCING_TOKEN is there too, so a
    // script written for dlm lock fences the same way under dlm elect.
    env: (handle) => ({
      DLM_ELECTION: command.election,
      DLM_LEADER_TOKEN: handle.token,
      DLM_LEADER_VALUE: command.value,
    }),
  };
}

async function runHolding(command: HoldingCommand, grant: GrantSpec, io: CliIo): Promise<number> {
  const signals = new SignalRelay();
  let client: DlmClient | null = null;
  try {
    client = await connect(command.target);
    return await holdAndRun(client, command, grant, io, signals);
  } finally {
    signals.dispose();
    client?.close();
  }
}

async function holdAndRun(
  client: DlmClient,
  command: HoldingCommand,
  grant: GrantSpec,
  io: CliIo,
  signals: SignalRelay,
): Promise<number> {
  const { ttlMs, killGraceMs } = command;
  const { tool, what: lock } = grant;
  const opening = client.openSession({
    ttlMs,
    clientName: tool,
    safetyMarginMs: lockSafetyMarginMs(ttlMs, killGraceMs),
    callTimeoutMs: command.target.timeoutMs,
  });
  const session = await firstOf(opening, signals, null);
  if (session instanceof Interrupted) {
    // The session may still open; it then expires on its own (the client is closed).
    opening.then((late) => late.close()).catch(() => {});
    return interrupted(io, tool, session.signal, 'while opening a session');
  }
  if (session instanceof Lost) throw session.reason; // not raced: there was no session yet

  const acquiring = grant.take(session, command.owner ?? `${hostname()} pid ${process.pid}`);
  let handle: LockHandle;
  try {
    const first = await firstOf(acquiring, signals, session);
    if (first instanceof Interrupted) {
      // Closing withdraws the wait, and frees a grant that raced it.
      acquiring.catch(() => {});
      await closeWithin(session);
      return interrupted(io, tool, first.signal, `while waiting for ${lock}`);
    }
    if (first instanceof Lost) {
      acquiring.catch(() => {});
      io.err(`${tool}: ${first.reason.message}; CMD was not started\n`);
      await closeWithin(session);
      return exitSessionLost;
    }
    handle = first;
  } catch (error) {
    const lost = !session.alive;
    await closeWithin(session);
    if (error instanceof LockNotAcquiredError || error instanceof NotElectedError) {
      io.err(`${tool}: ${error.message}; CMD was not started\n`);
      return exitNotAcquired;
    }
    if (lost) {
      io.err(`${tool}: ${lostReason(session).message}; CMD was not started\n`);
      return exitSessionLost;
    }
    throw error;
  }

  const outcome = await runCommand(command, grant, handle, session, io, signals);
  if (outcome.lost) {
    await closeWithin(session);
    return exitSessionLost;
  }
  try {
    await handle.release();
    await session.close();
  } catch (error) {
    if (grantEndedEarly(error)) {
      // Revoked (dlm revoke) or past its max hold while CMD ran: the cluster said so at
      // the release. CMD's exit code would claim a run under the lock that it was not.
      io.err(
        `${tool}: the grant of ${lock} had ended before CMD finished (revoked, or its max hold passed): part of CMD's run was not under the lock (${messageOf(error)})\n`,
      );
      await closeWithin(session);
      return exitSessionLost;
    }
    io.err(
      `${tool}: could not release ${lock} (${messageOf(error)}); the cluster frees it when session ${session.id} expires, within ${ttlMs} ms\n`,
    );
    await closeWithin(session);
  }
  return outcome.code;
}

/** The lock, or the set, as messages name it: the name alone for one, as dlm lock always did. */
function namesOf(command: LockCommand): string {
  return command.locks.length > 1 ? `the set ${command.locks.join(', ')}` : command.lock;
}

/** The release was refused because the grant had already ended (not a transport failure). */
function grantEndedEarly(error: unknown): boolean {
  const code = error instanceof DlmClientError ? error.errorCode : null;
  return code === 'notHolder' || code === 'staleToken';
}

interface Outcome {
  /** CMD's exit code, 128 + N if signal N ended it, 126/127 if it could not be started. */
  readonly code: number;
  /** Whether the session was lost while CMD ran (and so CMD was stopped). */
  readonly lost: boolean;
}

function runCommand(
  command: HoldingCommand,
  grant: GrantSpec,
  handle: LockHandle,
  session: Session,
  io: CliIo,
  signals: SignalRelay,
): Promise<Outcome> {
  const [file = '', ...args] = command.command;
  const { killGraceMs } = command;
  const { tool, what: lock } = grant;
  return new Promise((resolve) => {
    // detached: CMD leads a new process group (and session), so one kill(-pid) reaches
    // every process it started; dlm lock relays the signals a terminal would send.
    const child = spawn(file, args, {
      stdio: 'inherit',
      detached: true,
      env: {
        ...process.env,
        DLM_FENCING_TOKEN: handle.token,
        ...grant.env(handle),
        DLM_SESSION_ID: session.id,
      },
    });
    let lost = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | null = null;
    let leaderExit: number | null = null;
    /** Sends `signal` to CMD's process group; false if nothing is left in it. */
    const group = (signal: NodeJS.Signals | 0): boolean => {
      if (child.pid === undefined) return false;
      try {
        process.kill(-child.pid, signal);
        return true;
      } catch {
        return false;
      }
    };
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      if (killTimer !== null) clearTimeout(killTimer);
      session.signal.removeEventListener('abort', onLost);
      signals.relayTo(null);
      resolve(outcome);
    };
    const onLost = (): void => {
      lost = true;
      io.err(
        `${tool}: ${lostReason(session).message}\n${tool}: stopping CMD before the lease on ${lock} can end: SIGTERM now, SIGKILL in ${killGraceMs} ms\n`,
      );
      group('SIGTERM');
      killTimer = setTimeout(() => {
        killTimer = null;
        group('SIGKILL');
        if (leaderExit !== null) finish({ code: leaderExit, lost });
      }, killGraceMs);
    };
    session.signal.addEventListener('abort', onLost, { once: true });
    signals.relayTo((signal) => {
      // Once the session is lost, dlm lock stops CMD on its own schedule.
      if (!lost) group(signal);
    });
    child.once('error', (error: NodeJS.ErrnoException) => {
      io.err(`${tool}: cannot run '${file}': ${error.message}\n`);
      finish({ code: error.code === 'ENOENT' ? 127 : 126, lost });
    });
    child.once('exit', (code, signal) => {
      const exitCode = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
      if (!lost) {
        finish({ code: exitCode, lost });
        return;
      }
      io.err(
        `${tool}: CMD ended (${signal ?? `exit code ${code}`}); ${lock} may be held by another client now\n`,
      );
      // What CMD started may still run: it gets the rest of the grace, then SIGKILL.
      if (killTimer === null || !group(0)) finish({ code: exitCode, lost });
      else leaderExit = exitCode;
    });
  });
}

/** SIGINT, SIGTERM and SIGHUP for as long as dlm lock runs: the first is remembered. */
class SignalRelay {
  received: NodeJS.Signals | null = null;
  /** Resolves with the first signal received. */
  readonly first: Promise<NodeJS.Signals>;
  private resolveFirst: (signal: NodeJS.Signals) => void = () => {};
  private handler: ((signal: NodeJS.Signals) => void) | null = null;
  private readonly listener = (signal: NodeJS.Signals): void => {
    if (this.received === null) {
      this.received = signal;
      this.resolveFirst(signal);
    }
    this.handler?.(signal);
  };

  constructor() {
    this.first = new Promise((resolve) => {
      this.resolveFirst = resolve;
    });
    for (const signal of RELAYED) process.on(signal, this.listener);
  }

  relayTo(handler: ((signal: NodeJS.Signals) => void) | null): void {
    this.handler = handler;
  }

  dispose(): void {
    for (const signal of RELAYED) process.off(signal, this.listener);
  }
}

class Interrupted {
  constructor(readonly signal: NodeJS.Signals) {}
}

class Lost {
  constructor(readonly reason: Error) {}
}

/** `promise`, unless a signal arrives or (with a session) the session is lost first. */
function firstOf<T>(
  promise: Promise<T>,
  signals: SignalRelay,
  session: Session | null,
): Promise<T | Interrupted | Lost> {
  const racers: Promise<T | Interrupted | Lost>[] = [
    promise,
    signals.first.then((signal) => new Interrupted(signal)),
  ];
  let onAbort: (() => void) | null = null;
  if (session !== null) {
    racers.push(
      new Promise((resolve) => {
        onAbort = () => resolve(new Lost(lostReason(session)));
        if (session.signal.aborted) onAbort();
        else session.signal.addEventListener('abort', onAbort, { once: true });
      }),
    );
  }
  return Promise.race(racers).finally(() => {
    if (session !== null && onAbort !== null) {
      session.signal.removeEventListener('abort', onAbort);
    }
  });
}

function interrupted(io: CliIo, tool: string, signal: NodeJS.Signals, when: string): number {
  io.err(`${tool}: ${signal} ${when}; CMD was not started\n`);
  return 128 + (constants.signals[signal] ?? 0);
}

function lostReason(session: Session): Error {
  const reason: unknown = session.signal.reason;
  return reason instanceof Error ? reason : new SessionLostError(`session ${session.id} is lost`);
}

/** Ends the session, waiting a little for the cluster to confirm; never throws. */
async function closeWithin(session: Session): Promise<void> {
  await withinTimeout(session.close(), CLOSE_BUDGET_MS, 'close timed out').catch(() => {});
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
