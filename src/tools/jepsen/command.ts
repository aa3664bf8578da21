import { execFile, execFileSync } from 'node:child_process';

/** No `ip` or `nft` call takes long; one that hangs must not hang the run. */
export const COMMAND_TIMEOUT_MS = 10_000;

/**
 * Runs a system command (no shell) and resolves with its stdout; rejects with an error
 * that names the command line, its exit status and what it printed on stderr.
 */
export function run(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [...args],
      { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
          return;
        }
        const status = error.killed
          ? `timed out after ${COMMAND_TIMEOUT_MS} ms`
          : `exit ${String(error.code)}`;
        const detail = stderr.trim() || error.message;
        reject(new Error(`\`${[file, ...args].join(' ')}\` failed (${status}): ${detail}`));
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** For clean-up at process exit, where nothing asynchronous runs any more. Never throws. */
export function runSyncQuietly(file: string, args: readonly string[]): void {
  try {
    execFileSync(file, [...args], { timeout: COMMAND_TIMEOUT_MS, stdio: 'ignore' });
  } catch {
    // Best effort: the next run's sweep removes whatever is left.
  }
}

/** Whether `file --version` (or the given probe arguments) runs at all. */
export async function available(file: string, probe: readonly string[]): Promise<boolean> {
  try {
    await run(file, probe);
    return true;
  } catch {
    return false;
  }
}
