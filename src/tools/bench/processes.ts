import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { createServer } from 'node:net';

/** Helpers for the server processes a bench run starts and must stop. */

/** A loopback port nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error(`could not learn a free port (got ${String(address)})`));
      });
    });
  });
}

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
