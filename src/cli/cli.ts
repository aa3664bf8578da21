/**
 * The `dlm` command, as a pure function of its arguments so tests can drive it.
 *
 * Only `--help` works today. `cluster` and `serve` exist so that `npm start` and
 * scripts fail loudly (exit 2) instead of silently doing nothing until the node
 * runtime lands (issue 4).
 */

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Exit codes: 0 success, 2 usage error or command not available yet. */
export const exitOk = 0;
export const exitUsage = 2;

export const usage = `Usage: dlm <command> [options]

Commands:
  cluster                        run the local cluster from cluster.config.json (npm start)
  serve --config FILE --node ID  run one node as one process

Options:
  -h, --help                     show this help

Not built yet: cluster and serve exit with code 2 until the cluster runtime
arrives (issue 4).
`;

const notBuiltYet = (command: string): string =>
  `dlm ${command}: the cluster runtime is not built yet; it arrives with issue 4.
What works today:
  npm test                          unit, Raft and simulation tests
  npm run simulate -- --seeds N     run N seeds of the deterministic simulator
  npm run simulate -- --seed S      replay one seed exactly
`;

const isHelp = (arg: string): boolean => arg === '--help' || arg === '-h' || arg === 'help';

/** Runs the CLI on `args` (argv without node and script) and returns the exit code. */
export function runCli(args: readonly string[], io: CliIo): number {
  const [command, ...rest] = args;
  if (command === undefined) {
    io.err(usage);
    return exitUsage;
  }
  if (isHelp(command) || rest.some(isHelp)) {
    io.out(usage);
    return exitOk;
  }
  switch (command) {
    case 'cluster':
    case 'serve':
      io.err(notBuiltYet(command));
      return exitUsage;
    default:
      io.err(`dlm: unknown command '${command}'\nRun 'dlm --help' for usage.\n`);
      return exitUsage;
  }
}
