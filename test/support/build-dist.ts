import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: brings dist/ up to date once, before any test file runs, so that
 * the real `dlm serve` processes tests spawn (bin/dlm runs dist/) start at once rather
 * than one of them paying for a build inside a test's timeout.
 */
export default function setup(): void {
  const build = fileURLToPath(new URL('../../bin/build.js', import.meta.url));
  execFileSync(process.execPath, [build, '--if-stale'], { stdio: 'inherit' });
}
