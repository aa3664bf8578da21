import type { DlmClient, Leader, LeaderChange } from '../client/index.ts';
import type { CliIo, LeaderCommand } from './cli.ts';
import { exitOk } from './cli.ts';
import { connect } from './describe.ts';
import { formatDurationMs, formatJson } from './table.ts';

/**
 * `dlm leader NAME`: who leads the election NAME, as a linearizable read (unless
 * --stale); with --watch, the leader now and then each change (Observe) until --count
 * lines, SIGINT or SIGTERM. Nobody leading is an answer, not a failure: exit 0.
 */
export async function runLeader(command: LeaderCommand, io: CliIo): Promise<number> {
  const client = await connect(command.target);
  try {
    if (command.watch) return await watchLeader(client, command, io);
    const leader = await client.leader(command.election, {
      stale: command.stale,
      timeoutMs: command.target.timeoutMs,
    });
    io.out(
      command.json
        ? formatJson(leaderJson(command.election, leader))
        : formatLeader(command.election, leader),
    );
    return exitOk;
  } finally {
    client.close();
  }
}

/** The JSON of dlm leader (docs/cli.md): `leader` is null when nobody leads. */
export function leaderJson(election: string, leader: Leader | null) {
  return {
    election,
    leader:
      leader === null
        ? null
        : {
            session_id: Number(leader.sessionId),
            owner: leader.owner,
            value: leader.value,
            fencing_token: Number(leader.token),
            held_ms: leader.heldMs,
          },
  };
}

/** One change as a JSON line of dlm leader --watch (docs/cli.md). */
export function changeJson(change: LeaderChange) {
  return {
    type: change.type,
    index: Number(change.index),
    ...leaderJson(change.election, change.leader),
  };
}

/**
 *   jobs/primary is led by session 12 (build-7 pid 4242), token 57, for 1.2s
 *   value: 10.0.0.7:8080
 * or
 *   jobs/primary has no leader
 */
function formatLeader(election: string, leader: Leader | null): string {
  if (leader === null) return `${election} has no leader\n`;
  const owner = leader.owner === '' ? '' : ` (${leader.owner})`;
  return `${election} is led by session ${leader.sessionId}${owner}, token ${leader.token}, for ${formatDurationMs(leader.heldMs)}\nvalue: ${leader.value}\n`;
}

/** `INDEX  EVENT  SESSION  TOKEN  VALUE`, one line per change. */
function changeLine(change: LeaderChange): string {
  const { leader } = change;
  const cells = [
    change.index,
    change.type.toUpperCase(),
    leader?.sessionId ?? '-',
    leader?.token ?? '-',
  ];
  return `${cells.map((cell) => `${cell} `.padEnd(11)).join('')}${leader === null ? '' : JSON.stringify(leader.value)}\n`;
}

async function watchLeader(client: DlmClient, command: LeaderCommand, io: CliIo): Promise<number> {
  const stop = new AbortController();
  const interrupted = (): void => stop.abort();
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    // On stderr, so that stdout holds only the changes.
    io.err(`observing the election '${command.election}'\n`);
    if (!command.json) {
      io.out(
        `${['INDEX', 'EVENT', 'SESSION', 'TOKEN'].map((cell) => `${cell} `.padEnd(11)).join('')}VALUE\n`,
      );
    }
    let seen = 0;
    for await (const change of client.observe(command.election, { signal: stop.signal })) {
      io.out(command.json ? `${JSON.stringify(changeJson(change))}\n` : changeLine(change));
      seen++;
      if (command.count !== null && seen >= command.count) break;
    }
    return exitOk;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}
