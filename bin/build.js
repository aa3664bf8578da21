// Builds dist/ from src/ with tsc, and decides whether a checkout's dist/ is stale.
//
//   node bin/build.js             build now (npm run build)
//   node bin/build.js --if-stale  build only when a source is newer than dist/
//
// bin/dlm imports ensureBuilt() so that a checkout always runs code matching its
// sources. Many `dlm serve` processes may start at once (a test starts three per
// cluster, test files run in parallel), so a build never writes into the live dist/:
// tsc writes a private directory that is then renamed into place, and a lock file
// keeps the other processes waiting instead of building the same thing again.
//
// Plain JavaScript on purpose: it runs before anything is compiled.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
/** Written last; its mtime is when the build that wrote dist/ began reading sources. */
const STAMP = join(DIST, '.built');
/** Scratch space next to dist/, so the final rename stays on one filesystem. */
const WORK = join(ROOT, '.build');
const LOCK = join(WORK, 'lock');
/** Not compiled into dist/: dev tools that run from source through tsx. */
const UNBUILT_DIRS = [join(SRC, 'tools')];
/** What else changes the output. The protos are not here: dist/ reads proto/ at run time. */
const BUILD_INPUTS = ['tsconfig.json', 'tsconfig.build.json', 'tsconfig.types.json'];
const LOCK_POLL_MS = 100;

/** A build that could not run or failed: its message says what to do, no stack needed. */
export class BuildError extends Error {}

/**
 * Rebuilds dist/ when it is missing or older than a source. An installed package ships
 * dist/ without src/ and is never rebuilt.
 */
export function ensureBuilt() {
  if (!existsSync(SRC) || staleReason() === null) return;
  underLock(() => {
    // Whoever held the lock before us may have just built it.
    const reason = staleReason();
    if (reason !== null) build(reason);
  });
}

/** Runs `fn` holding the build lock, waiting for another holder first. */
function underLock(fn) {
  for (;;) {
    if (tryLock()) {
      try {
        return fn();
      } finally {
        rmSync(LOCK, { force: true });
      }
    }
    waitForLock();
  }
}

/** Why dist/ must be rebuilt, or null when it is up to date. */
function staleReason() {
  let builtMs;
  try {
    builtMs = statSync(STAMP).mtimeMs;
  } catch {
    return 'dist/ is missing';
  }
  const newer = newestInput(builtMs);
  return newer === null ? null : `${relative(ROOT, newer)} is newer than dist/`;
}

/**
 * The first input changed after `sinceMs`, or null. Directories count too: a deleted or
 * renamed source changes only its directory's mtime.
 */
function newestInput(sinceMs) {
  for (const name of BUILD_INPUTS) {
    const path = join(ROOT, name);
    if (statSync(path).mtimeMs > sinceMs) return path;
  }
  const pending = [SRC];
  while (pending.length > 0) {
    const dir = pending.pop();
    if (statSync(dir).mtimeMs > sinceMs) return dir;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!UNBUILT_DIRS.includes(path)) pending.push(path);
      } else if (statSync(path).mtimeMs > sinceMs) {
        return path;
      }
    }
  }
  return null;
}

function tryLock() {
  mkdirSync(WORK, { recursive: true });
  try {
    const fd = openSync(LOCK, 'wx');
    writeFileSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (error) {
    if (error.code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Sleeps until the lock is gone. A holder that died (killed mid-build) leaves its lock
 * behind; that lock is removed. Should two waiters both remove it, two builds run, and
 * each still renames a complete tree into place, so the outcome stays correct.
 */
function waitForLock() {
  for (;;) {
    let holderPid;
    try {
      holderPid = Number(readFileSync(LOCK, 'utf8'));
    } catch (error) {
      if (error.code === 'ENOENT') return;
      throw error;
    }
    // An empty file is a holder between creating the lock and writing its pid.
    if (holderPid > 0 && !isAlive(holderPid)) {
      rmSync(LOCK, { force: true });
      return;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, LOCK_POLL_MS);
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Compiles src/ into a private directory, then swaps it in for dist/. Holds the lock. */
function build(reason) {
  const startedMs = Date.now();
  process.stderr.write(`dlm: building dist/ with tsc (${reason})\n`);
  removeLeftovers();
  const out = join(WORK, `out-${process.pid}`);
  const old = join(WORK, `old-${process.pid}`);
  // The type check is `npm run typecheck`; the build only emits, which is twice as fast.
  tsc(['-p', join(ROOT, 'tsconfig.build.json'), '--noCheck', '--outDir', out]);
  tsc(['-p', join(ROOT, 'tsconfig.types.json'), '--noCheck', '--outDir', out]);
  writeFileSync(join(out, '.built'), '');
  // A source saved during the build is newer than this, so the next start rebuilds.
  utimesSync(join(out, '.built'), startedMs / 1000, startedMs / 1000);
  // rename(2) cannot replace a non-empty directory: move the old one aside first. A
  // process starting in between finds no dist/, waits on the lock, then finds this one.
  if (existsSync(DIST)) renameSync(DIST, old);
  try {
    renameSync(out, DIST);
  } catch (error) {
    // A concurrent build (see waitForLock) got there first; its tree is as good as ours.
    if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    rmSync(out, { recursive: true, force: true });
  }
  rmSync(old, { recursive: true, force: true });
}

/** Trees that builds killed midway left behind (named by their builder's pid). */
function removeLeftovers() {
  for (const name of readdirSync(WORK)) {
    const pid = Number(name.match(/^(?:out|old)-(\d+)$/)?.[1]);
    if (pid > 0 && (pid === process.pid || !isAlive(pid))) {
      rmSync(join(WORK, name), { recursive: true, force: true });
    }
  }
}

function tsc(args) {
  let tscPath;
  try {
    tscPath = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    throw new BuildError(
      'dlm: dist/ must be rebuilt, but typescript (a dev dependency) is not installed; ' +
        'run `npm ci` without --omit=dev, or `npm run build` where it is installed',
    );
  }
  // tsc reports errors on stdout; stdout belongs to the command (`dlm status --json`).
  const result = spawnSync(process.execPath, [tscPath, ...args], { stdio: ['ignore', 2, 2] });
  if (result.status !== 0) {
    throw new BuildError(
      `dlm: tsc ${args.join(' ')} failed (exit ${result.status ?? result.signal})`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    if (process.argv.includes('--if-stale')) ensureBuilt();
    else underLock(() => build('npm run build'));
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exitCode = 1;
  }
}
