import { spawn } from 'node:child_process';
import { constants, hostname } from 'node:os';
import {
  type DlmClient,
  DlmClientError,
  type LockHandle,
  LockNotAcquiredError,
  type Session,
  SessionLostError,
} from '../client/index.ts';
import type { CliIo, LockCommand } from './cli.ts';
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
  const signals = new SignalRelay();
  let client: DlmClient | null = null;
  try {
    client = await connect(command.target);
    return await lockAndRun(client, command, io, signals);
  } finally {
    signals.dispose();
    client?.close();
  }
}

async function lockAndRun(
  client: DlmClient,
  command: LockCommand,
  io: CliIo,
  signals: SignalRelay,
): Promise<number> {
  const { ttlMs, killGraceMs } = command;
  const lock = namesOf(command);
  const opening = client.openSession({
    ttlMs,
    clientName: 'dlm lock',
    safetyMarginMs: lockSafetyMarginMs(ttlMs, killGraceMs),
    callTimeoutMs: command.target.timeoutMs,
  });
  const session = await firstOf(opening, signals, null);
  if (session instanceof Interrupted) {
    // The session may still open; it then expires on its own (the client is closed).
    opening.then((late) => late.close()).catch(() => {});
    return interrupted(io, session.signal, 'while opening a session');
  }
  if (session instanceof Lost) throw session.reason; // not raced: there was no session yet

  const mode = command.shared ? 'SHARED' : 'EXCLUSIVE';
  const waiting = {
    waitMs: command.waitMs,
    owner: command.owner ?? `${hostname()} pid ${process.pid}`,
  };
  // Several names are taken as one set (all or none, one token): taking them one by one
  // could deadlock with another dlm lock naming them in another order.
  const acquiring: Promise<LockHandle> =
    command.locks.length > 1
      ? session.acquireAll(
          command.locks.map((name) => ({ name, mode })),
          waiting,
        )
      : session.acquire(lock, { mode, ...waiting });
  let handle: LockHandle;
  try {
    const first = await firstOf(acquiring, signals, session);
    if (first instanceof Interrupted) {
      // Closing withdraws the wait, and frees a grant that raced it.
      acquiring.catch(() => {});
      await closeWithin(session);
      return interrupted(io, first.signal, `while waiting for ${lock}`);
    }
    if (first instanceof Lost) {
      acquiring.catch(() => {});
      io.err(`dlm lock: ${first.reason.message}; CMD was not started\n`);
      await closeWithin(session);
      return exitSessionLost;
    }
    handle = first;
  } catch (error) {
    const lost = !session.alive;
    await closeWithin(session);
    if (error instanceof LockNotAcquiredError) {
      io.err(`dlm lock: ${error.message}; CMD was not started\n`);
      return exitNotAcquired;
    }
    if (lost) {
      io.err(`dlm lock: ${lostReason(session).message}; CMD was not started\n`);
      return exitSessionLost;
    }
    throw error;
  }

  const outcome = await runCommand(command, handle, session, io, signals);
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
        `dlm lock: the grant of ${lock} had ended before CMD finished (revoked, or its max hold passed): part of CMD's run was not under the lock (${messageOf(error)})\n`,
      );
      await closeWithin(session);
      return exitSessionLost;
    }
    io.err(
      `dlm lock: could not release ${lock} (${messageOf(error)}); the cluster frees it when session ${session.id} expires, within ${ttlMs} ms\n`,
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
  command: LockCommand,
  handle: LockHandle,
  session: Session,
  io: CliIo,
  signals: SignalRelay,
): Promise<Outcome> {
  const [file = '', ...args] = command.command;
  const { killGraceMs } = command;
  const lock = namesOf(command);
  return new Promise((resolve) => {
    // detached: CMD leads a new process group (and session), so one kill(-pid) reaches
    // every process it started; dlm lock relays the signals a terminal would send.
    const child = spawn(file, args, {
      stdio: 'inherit',
      detached: true,
      env: {
        ...process.env,
        DLM_FENCING_TOKEN: handle.token,
        DLM_LOCK: command.lock,
        ...(command.locks.length > 1 ? { DLM_LOCKS: JSON.stringify(command.locks) } : {}),
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
        `dlm lock: ${lostReason(session).message}\ndlm lock: stopping CMD before the lease on ${lock} can end: SIGTERM now, SIGKILL in ${killGraceMs} ms\n`,
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
      io.err(`dlm lock: cannot run '${file}': ${error.message}\n`);
      finish({ code: error.code === 'ENOENT' ? 127 : 126, lost });
    });
    child.once('exit', (code, signal) => {
      const exitCode = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
      if (!lost) {
        finish({ code: exitCode, lost });
        return;
      }
      io.err(
        `dlm lock: CMD ended (${signal ?? `exit code ${code}`}); ${lock} may be held by another client now\n`,
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

function interrupted(io: CliIo, signal: NodeJS.Signals, when: string): number {
  io.err(`dlm lock: ${signal} ${when}; CMD was not started\n`);
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
