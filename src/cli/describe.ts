import type { DescribeResponse, WireLockInfo } from '../api/proto.ts';
import { DlmClient } from '../client/index.ts';
import type { AdminTarget, CliIo, DescribeCommand } from './cli.ts';
import { exitOk } from './cli.ts';
import { type LockJson, lockJson } from './json.ts';
import { readCall } from './read.ts';
import { formatDurationMs, formatHeaderTable, formatJson } from './table.ts';
import { resolveTarget, tokenOption } from './target.ts';

/**
 * `dlm describe NAME`: who holds a lock and who waits for it, as a linearizable read
 * (unless --stale), as text or as one JSON document (a LockJson: see docs/cli.md).
 */
export async function runDescribe(command: DescribeCommand, io: CliIo): Promise<number> {
  const answer = (await readCall(command.target, 'Describe', {
    lock: command.lock,
    stale: command.stale,
  })) as unknown as DescribeResponse;
  const info: WireLockInfo = { lock: command.lock, ...answer };
  const state = lockJson(info);
  io.out(command.json ? formatJson(state) : formatLockState(state));
  return exitOk;
}

/** A client for the cluster of --endpoints, else of every clientAddress in --config. */
export async function connect(target: AdminTarget): Promise<DlmClient> {
  const { endpoints, credentials } = await resolveTarget(target);
  return new DlmClient({ endpoints, credentials, ...tokenOption() });
}

/**
 *   jobs/1 is free
 * or
 *   jobs/1 is held EXCLUSIVE by:
 *     OWNER            SESSION  TOKEN  HELD
 *     build-7 pid 4242 12       57     1.2s
 *   waiting (1):
 *     OWNER          SESSION  MODE
 *     build-8 pid 77 13       EXCLUSIVE
 */
export function formatLockState(state: LockJson): string {
  const { lock, holders, waiters } = state;
  if (holders.length === 0 && waiters.length === 0) return `${lock} is free\n`;
  const owner = (text: string): string => (text === '' ? '-' : text);
  const indent = (table: string): string =>
    table
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => `  ${line}\n`)
      .join('');
  let text =
    holders.length === 0 ? `${lock} has no holder\n` : `${lock} is held ${state.mode} by:\n`;
  if (holders.length > 0) {
    text += indent(
      formatHeaderTable(
        ['OWNER', 'SESSION', 'TOKEN', 'HELD'],
        holders.map((holder) => [
          owner(holder.owner),
          String(holder.session_id),
          String(holder.fencing_token),
          formatDurationMs(holder.held_ms),
        ]),
      ),
    );
  }
  if (waiters.length > 0) {
    text += `waiting (${waiters.length}):\n`;
    text += indent(
      formatHeaderTable(
        ['OWNER', 'SESSION', 'MODE'],
        waiters.map((waiter) => [owner(waiter.owner), String(waiter.session_id), waiter.mode]),
      ),
    );
  }
  return text;
}

/** `promise`, or a rejection with `message` once `ms` have passed. */
export function withinTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
