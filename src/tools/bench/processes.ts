import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';

/** Helpers for the server processes a bench run starts and must stop. */

/**
 * A loopback port for a server this run starts: the shared picker, which never hands
 * out one port twice in a process and keeps below the ephemeral range. The OS's own pick
 * (port 0) once gave a node's client and metrics addresses the same port, and its
 * config was refused.
 */
export { freePort } from '../free-port.ts';

/** Starts `command` with stdout and stderr appended to `logPath`. */
export function spawnLogged(
  command: string,
  args: readonly string[],
  logPath: string,
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  const log = openSync(logPath, 'a');
  const child = spawn(command, args, { stdio: ['ignore', log, log], env });
  if (child.pid === undefined) throw new Error(`could not start ${command} (see ${logPath})`);
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL for whatever still runs after `graceMs`. Resolves once all exited. */
export async function stopProcesses(
  children: readonly ChildProcess[],
  graceMs: number,
): Promise<void> {
  const running = children.filter(isRunning);
  const exited = running.map(
    (child) => new Promise<void>((resolve) => child.once('exit', () => resolve())),
  );
  for (const child of running) child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
  });
  await Promise.race([Promise.all(exited), grace]);
  clearTimeout(timer);
  for (const child of running) if (isRunning(child)) child.kill('SIGKILL');
  await Promise.all(exited);
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
