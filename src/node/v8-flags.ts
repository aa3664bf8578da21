import { isMainThread } from 'node:worker_threads';

/**
 * Whether V8's flags are frozen in this process (--freeze-flags-after-init): then any
 * v8.setFlagsFromString aborts the process, a check no try can catch. V8 reads `_` and
 * `-` in a flag's name alike, takes `--no-` (or `--no`) before a boolean flag's name as
 * turning it off, and the last of a flag's mentions wins; Node refuses the flag in
 * NODE_OPTIONS, so the command line (execArgv) is the only place it can be.
 */
export function v8FlagsFrozen(execArgv: readonly string[] = process.execArgv): boolean {
  return v8BooleanFlag('freeze-flags-after-init', execArgv);
}

/** Whether the command line turns on V8's boolean flag `flag` (written with dashes), as V8 reads it. */
export function v8BooleanFlag(
  flag: string,
  execArgv: readonly string[] = process.execArgv,
): boolean {
  let on = false;
  for (const [name, value] of v8Flags(execArgv)) {
    if (name === flag) on = value === undefined || !FALSE_VALUES.has(value);
    else if (name === `no-${flag}` || name === `no${flag}`) on = false;
  }
  return on;
}

/** Each flag of the command line as V8 reads its name (`_` as `-`, leading dashes gone), with its `=value`. */
function* v8Flags(execArgv: readonly string[]): Generator<[string, string | undefined]> {
  for (const arg of execArgv) {
    if (!arg.startsWith('-')) continue;
    const [rawName = '', value] = arg.replace(/^--?/, '').split('=', 2);
    yield [rawName.replaceAll('_', '-'), value];
  }
}

const FALSE_VALUES = new Set(['false', '0']);

/** The value the command line gives V8's integer flag `flag` (written with dashes), the last one winning; null if none. */
export function v8IntFlag(
  flag: string,
  execArgv: readonly string[] = process.execArgv,
): number | null {
  let value: number | null = null;
  for (const [name, text] of v8Flags(execArgv)) {
    if (name !== flag || text === undefined) continue;
    const parsed = Number.parseInt(text, 10);
    if (Number.isFinite(parsed)) value = parsed;
  }
  return value;
}

/**
 * Whether this thread may change V8's flags, and change them back, without V8 aborting
 * the process: not under frozen flags; not under --abort-on-contradictory-flags, where a
 * flag set twice is a contradiction (unless --fuzzing, which turns that check off); and
 * only on the main thread, whose execArgv is the process's command line (V8's flags are
 * the process's, a Worker's execArgv its own). Review of f8ae835: each of these aborted.
 */
export function v8FlagsChangeable(execArgv: readonly string[] = process.execArgv): boolean {
  if (!isMainThread || v8FlagsFrozen(execArgv)) return false;
  return (
    !v8BooleanFlag('abort-on-contradictory-flags', execArgv) || v8BooleanFlag('fuzzing', execArgv)
  );
}
