import * as grpc from '@grpc/grpc-js';
import {
  type ListLocksResponse,
  type ListSessionsResponse,
  packageDefinition,
  type WatchEvent,
} from '../api/proto.ts';
import { Connection } from '../client/connection.ts';
import type { AdminTarget, CliIo, ReadCommand } from './cli.ts';
import { exitFailed, exitOk } from './cli.ts';
import { describeServiceError } from './errors.ts';
import { type LockJson, lockJson, sessionJson } from './json.ts';
import { formatDurationMs, formatHeaderTable, formatJson } from './table.ts';
import { resolveTarget, tokenOption } from './target.ts';

/**
 * `dlm locks`, `dlm sessions` and `dlm watch`: the cluster's lock state for people
 * (aligned tables) and scripts (--json: one document, or a JSON line per event; field
 * names in docs/cli.md). Reads go to any node, retried elsewhere on UNAVAILABLE.
 */
export async function runRead(command: ReadCommand, io: CliIo): Promise<number> {
  switch (command.name) {
    case 'locks':
      return await printLocks(command, io);
    case 'sessions':
      return await printSessions(command, io);
    case 'watch':
      return await watch(command, io);
  }
}

/** One unary call of dlm.v1.Lock, with the client's retries and rerouting, within --timeout-ms. */
export async function readCall(
  target: AdminTarget,
  method: string,
  request: object,
): Promise<Record<string, unknown>> {
  const { endpoints, credentials } = await resolveTarget(target);
  const connection = new Connection({
    endpoints,
    credentials,
    transport: 'unary',
    ...tokenOption(),
  });
  try {
    return await connection.call('Lock', method, request, {
      deadlineMs: connection.clock.nowMs() + target.timeoutMs,
    });
  } finally {
    connection.close();
  }
}

async function printLocks(
  command: Extract<ReadCommand, { name: 'locks' }>,
  io: CliIo,
): Promise<number> {
  const answer = (await readCall(command.target, 'ListLocks', {
    prefix: command.prefix,
    limit: command.limit,
    after: command.after,
    stale: command.stale,
  })) as unknown as ListLocksResponse;
  const locks = answer.locks.map(lockJson);
  if (command.json) {
    io.out(
      formatJson({
        prefix: command.prefix,
        index: Number(answer.header.index),
        locks,
        truncated: answer.truncated,
        last: answer.last,
      }),
    );
    return exitOk;
  }
  io.out(formatHeaderTable(LOCKS_HEADER, locks.flatMap(lockRows)));
  if (answer.truncated) {
    const prefix = command.prefix === '' ? '' : ` ${command.prefix}`;
    io.out(`more locks follow: dlm locks${prefix} --after ${answer.last}\n`);
  }
  return exitOk;
}

const LOCKS_HEADER = ['LOCK', 'MODE', 'SESSION', 'OWNER', 'TOKEN', 'HELD', 'WAITERS'];

/** One row per holder; a lock nobody holds (waiters only, or a lock-delay) gets one row of dashes. */
function lockRows(lock: LockJson): string[][] {
  const waiters = String(lock.waiters.length);
  if (lock.holders.length === 0) return [[lock.lock, '-', '-', '-', '-', '-', waiters]];
  return lock.holders.map((holder) => [
    lock.lock,
    lock.mode ?? '-',
    String(holder.session_id),
    holder.owner === '' ? '-' : holder.owner,
    String(holder.fencing_token),
    formatDurationMs(holder.held_ms),
    waiters,
  ]);
}

async function printSessions(
  command: Extract<ReadCommand, { name: 'sessions' }>,
  io: CliIo,
): Promise<number> {
  const answer = (await readCall(command.target, 'ListSessions', {
    limit: command.limit,
    after_session_id: String(command.after),
    stale: command.stale,
  })) as unknown as ListSessionsResponse;
  const sessions = answer.sessions.map(sessionJson);
  if (command.json) {
    io.out(
      formatJson({
        index: Number(answer.header.index),
        sessions,
        truncated: answer.truncated,
        last_session_id: Number(answer.last_session_id),
      }),
    );
    return exitOk;
  }
  const rows = sessions.map((session) => [
    String(session.session_id),
    session.client_name === '' ? '-' : session.client_name,
    formatDurationMs(session.ttl_ms),
    formatDurationMs(session.since_refresh_ms),
    String(session.held_count),
    String(session.waiting_count),
  ]);
  io.out(formatHeaderTable(['SESSION', 'CLIENT', 'TTL', 'REFRESHED', 'HELD', 'WAITING'], rows));
  if (answer.truncated) {
    io.out(`more sessions follow: dlm sessions --after ${answer.last_session_id}\n`);
  }
  return exitOk;
}

const LockService = (
  grpc.loadPackageDefinition(packageDefinition) as unknown as {
    dlm: { v1: { Lock: grpc.ServiceClientConstructor } };
  }
).dlm.v1.Lock;

type WatchStream = grpc.ClientReadableStream<WatchEvent>;

/**
 * Streams events from the first endpoint whose Watch goes live (its initial metadata
 * says every later event will be seen), until --count events, SIGINT or SIGTERM (exit
 * 0), or the stream ends (exit 1: re-read and watch again, as the message says).
 */
async function watch(command: Extract<ReadCommand, { name: 'watch' }>, io: CliIo): Promise<number> {
  const { endpoints, credentials } = await resolveTarget(command.target);
  const problems: string[] = [];
  for (const address of endpoints) {
    const client = new LockService(address, credentials);
    try {
      const stream = (client as unknown as { Watch: (request: object) => WatchStream }).Watch({
        prefix: command.prefix,
      });
      const live = await goesLive(stream, command.target.timeoutMs);
      if (live !== true) {
        problems.push(`${address}: ${live}`);
        stream.cancel();
        continue;
      }
      return await follow(stream, command, io, address);
    } finally {
      client.close();
    }
  }
  io.err(
    `dlm watch: no node would serve the watch (${problems.join('; ')})\n  what to do: check the addresses (--endpoints, or --config) and run \`dlm status\`\n`,
  );
  return exitFailed;
}

/** true once the node sent its initial metadata; else why not. */
function goesLive(stream: WatchStream, timeoutMs: number): Promise<true | string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`no answer within ${timeoutMs} ms`), timeoutMs);
    stream.once('metadata', () => {
      clearTimeout(timer);
      resolve(true);
    });
    stream.once('error', (error) => {
      clearTimeout(timer);
      resolve(describeServiceError(error));
    });
  });
}

function follow(
  stream: WatchStream,
  command: Extract<ReadCommand, { name: 'watch' }>,
  io: CliIo,
  address: string,
): Promise<number> {
  return new Promise((resolve) => {
    let seen = 0;
    const stop = (code: number): void => {
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
      stream.removeAllListeners('data');
      stream.cancel();
      resolve(code);
    };
    const interrupted = (): void => stop(exitOk);
    // On stderr, so that stdout holds only events: from here on, every event is seen.
    io.err(`watching '${command.prefix}' at ${address}\n`);
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    if (!command.json)
      io.out(`${pad('INDEX', 10)}${pad('EVENT', 9)}${pad('SESSION', 10)}${pad('TOKEN', 10)}LOCK\n`);
    stream.on('data', (event: WatchEvent) => {
      io.out(command.json ? `${JSON.stringify(watchJson(event))}\n` : watchLine(event));
      seen++;
      if (command.count !== null && seen >= command.count) stop(exitOk);
    });
    stream.on('error', (error: grpc.ServiceError) => {
      if (error.code === grpc.status.CANCELLED) return;
      io.err(
        `dlm watch: the watch at ${address} ended: ${describeServiceError(error)}\n  what to do: events may have been missed; re-read the locks (dlm locks) and watch again\n`,
      );
      stop(exitFailed);
    });
  });
}

/** One event as a JSON line (docs/cli.md). */
export function watchJson(event: WatchEvent) {
  return {
    type: event.type,
    lock: event.lock,
    session_id: Number(event.session_id),
    fencing_token: Number(event.fencing_token),
    index: Number(event.index),
    node_id: event.header.node_id,
  };
}

function watchLine(event: WatchEvent): string {
  return `${pad(event.index, 10)}${pad(event.type, 9)}${pad(event.session_id, 10)}${pad(event.fencing_token, 10)}${event.lock}\n`;
}

function pad(text: string, width: number): string {
  return `${text} `.padEnd(width);
}
