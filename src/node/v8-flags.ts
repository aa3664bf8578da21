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
  for (const arg of execArgv) {
    if (!arg.startsWith('-')) continue;
    const [rawName = '', value] = arg.replace(/^--?/, '').split('=', 2);
    const name = rawName.replaceAll('_', '-');
    if (name === flag) on = value === undefined || !FALSE_VALUES.has(value);
    else if (name === `no-${flag}` || name === `no${flag}`) on = false;
  }
  return on;
}

const FALSE_VALUES = new Set(['false', '0']);
