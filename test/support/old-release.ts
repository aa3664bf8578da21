import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The `dlm` launcher of an earlier commit, for tests that run a mixed-version cluster.
 * The commit is extracted and built once into this checkout's `.build/` (gitignored),
 * about 15 s, and reused while it is whole.
 *
 * It lives inside the checkout rather than the temp dir so that its imports find the
 * checkout's own node_modules by Node's walk up the parent directories. A tree cached in
 * the temp dir needed a node_modules link, which outlived the clone it pointed into: the
 * next clone's run reused the tree, and every old node failed to start ("Cannot find
 * package 'pino'"). The name must not match bin/build.js's scratch names (out-PID,
 * old-PID), which it removes.
 */
export function oldReleaseBin(commit: string): string {
  const tree = join(ROOT, '.build', `release-${commit.slice(0, 12)}`);
  const bin = join(tree, 'bin', 'dlm');
  if (existsSync(join(tree, 'dist', 'cli', 'main.js'))) return bin;
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true });
  execSync(`git -C ${JSON.stringify(ROOT)} archive ${commit} | tar -x -C ${JSON.stringify(tree)}`);
  // Its bin/dlm builds its dist/ when missing; --help then exits without serving.
  execFileSync(process.execPath, [bin, '--help'], { stdio: 'ignore' });
  return bin;
}
