/**
 * The `dlm` command. Argument parsing lives here as a function tests can drive; the
 * commands themselves are in serve.ts and cluster.ts.
 */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Exit codes: 0 success, 1 the command failed, 2 usage error. */
export const exitOk = 0;
export const exitFailed = 1;
export const exitUsage = 2;

export const usage = `Usage: dlm <command> [options]

Commands:
  cluster [--config FILE]               run every node of FILE as its own process, with a
                                        live status line per node (npm start); FILE
                                        defaults to cluster.config.json
  serve --config FILE --node ID [--join]
                                        run one node as one process; --join starts it
                                        empty, to be added to a running cluster

Options:
  -h, --help                            show this help
`;

export type Command =
  | { readonly name: 'help' }
  | { readonly name: 'cluster'; readonly configPath: string }
  | {
      readonly name: 'serve';
      readonly configPath: string;
      readonly id: string;
      readonly join: boolean;
    };

const isHelp = (arg: string): boolean => arg === '--help' || arg === '-h' || arg === 'help';

/** Parses argv (without node and script); a string is a usage error naming what is wrong. */
export function parseCommand(args: readonly string[]): Command | string {
  const [name, ...rest] = args;
  if (name === undefined) return 'no command given';
  if (isHelp(name) || rest.some(isHelp)) return { name: 'help' };
  const flags = parseFlags(rest);
  if (typeof flags === 'string') return `dlm ${name}: ${flags}`;
  switch (name) {
    case 'cluster':
      return { name, configPath: flags.values.get('--config') ?? 'cluster.config.json' };
    case 'serve': {
      const configPath = flags.values.get('--config');
      const id = flags.values.get('--node');
      if (configPath === undefined) return 'dlm serve: --config FILE is required';
      if (id === undefined) return 'dlm serve: --node ID is required';
      return { name, configPath, id, join: flags.switches.has('--join') };
    }
    default:
      return `dlm: unknown command '${name}'`;
  }
}

const VALUE_FLAGS = new Set(['--config', '--node']);
const SWITCHES = new Set(['--join']);

function parseFlags(
  args: readonly string[],
): { values: Map<string, string>; switches: Set<string> } | string {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const flag = args[i] ?? '';
    if (SWITCHES.has(flag)) switches.add(flag);
    else if (VALUE_FLAGS.has(flag)) {
      const value = args[++i];
      if (value === undefined || value.startsWith('--')) return `${flag} needs a value`;
      values.set(flag, value);
    } else return `unknown option '${flag}'`;
  }
  return { values, switches };
}

/** Runs the CLI and returns the exit code. */
export async function runCli(args: readonly string[], io: CliIo): Promise<number> {
  const command = parseCommand(args);
  if (typeof command === 'string') {
    io.err(`${command}\nRun 'dlm --help' for usage.\n`);
    return exitUsage;
  }
  try {
    switch (command.name) {
      case 'help':
        io.out(usage);
        return exitOk;
      case 'cluster': {
        const { runCluster } = await import('./cluster.ts');
        return await runCluster(command.configPath, io);
      }
      case 'serve': {
        const { serve } = await import('./serve.ts');
        await serve(command);
        return exitOk;
      }
    }
  } catch (error) {
    io.err(`dlm ${command.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return exitFailed;
  }
}
