import { DlmClient, type LockState } from '../client/index.ts';
import type { AdminTarget, CliIo, DescribeCommand } from './cli.ts';
import { exitOk } from './cli.ts';
import { resolveTarget, tokenOption } from './target.ts';

/**
 * `dlm describe NAME`: who holds a lock and who waits for it, through the TypeScript
 * client (src/client), as a linearizable read.
 */
export async function runDescribe(command: DescribeCommand, io: CliIo): Promise<number> {
  const client = await connect(command.target);
  try {
    const state = await client.describe(command.lock, { timeoutMs: command.target.timeoutMs });
    io.out(formatLockState(command.lock, state));
    return exitOk;
  } finally {
    client.close();
  }
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
 *     owner build-7 pid 4242  session 12  token 57
 *   waiting (1):
 *     owner build-8 pid 77  session 13  mode EXCLUSIVE
 */
export function formatLockState(lock: string, state: LockState): string {
  if (state.holders.length === 0 && state.waiters.length === 0) return `${lock} is free\n`;
  const owner = (text: string): string => (text === '' ? '-' : text);
  const lines =
    state.holders.length === 0 ? [`${lock} has no holder`] : [`${lock} is held ${state.mode} by:`];
  for (const holder of state.holders) {
    lines.push(
      `  owner ${owner(holder.owner)}  session ${holder.sessionId}  token ${holder.token}`,
    );
  }
  if (state.waiters.length > 0) {
    lines.push(`waiting (${state.waiters.length}):`);
    for (const waiter of state.waiters) {
      lines.push(
        `  owner ${owner(waiter.owner)}  session ${waiter.sessionId}  mode ${waiter.mode}`,
      );
    }
  }
  return lines.map((line) => `${line}\n`).join('');
}

/** `promise`, or a rejection with `message` once `ms` have passed. */
export function withinTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
