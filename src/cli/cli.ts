import { parseAddress } from '../config/address.ts';

/**
 * The `dlm` command. Argument parsing lives here as a function tests can drive; the
 * commands themselves are in serve.ts, cluster.ts and admin.ts.
 */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Exit codes: 0 success, 1 the command failed, 2 usage error. */
export const exitOk = 0;
export const exitFailed = 1;
export const exitUsage = 2;

export const DEFAULT_CONFIG_PATH = 'cluster.config.json';
/** How long an admin command keeps looking for the leader and waiting for its answer. */
export const DEFAULT_ADMIN_TIMEOUT_MS = 60_000;

export const usage = `Usage: dlm <command> [options]

Running nodes:
  cluster [--config FILE]               run every node of FILE as its own process, with a
                                        live status line per node (npm start)
  serve --config FILE --node ID [--join]
                                        run one node as one process; --join starts it
                                        empty, to be added to a running cluster

Operating a cluster (reached through --endpoints, else the clientAddress of every node
in --config):
  status                                each node's role, term, commit and applied index,
                                        and the members as the leader sees them
  member add ID [--peer-address HOST:PORT] [--client-address HOST:PORT]
                                        add a node (start it first with serve --join); the
                                        addresses default to the node's entry in --config
  member remove ID                      remove a voter or a learner
  leader transfer [ID]                  hand leadership to ID, or to the most caught-up voter

Options:
  --config FILE                         cluster config (default ${DEFAULT_CONFIG_PATH})
  --endpoints HOST:PORT[,HOST:PORT...]  client addresses to ask instead of the config's
  --timeout-ms N                        give up after N ms (default ${DEFAULT_ADMIN_TIMEOUT_MS})
  -h, --help                            show this help
`;

/** Where an admin command finds the cluster, and how long it may take. */
export interface AdminTarget {
  readonly configPath: string;
  /** Empty: use the config's client addresses. */
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
}

export type AdminCommand =
  | { readonly name: 'status' }
  | {
      readonly name: 'member add';
      readonly id: string;
      readonly peerAddress: string | null;
      readonly clientAddress: string | null;
    }
  | { readonly name: 'member remove'; readonly id: string }
  | { readonly name: 'leader transfer'; readonly id: string | null };

export type Command =
  | { readonly name: 'help' }
  | { readonly name: 'cluster'; readonly configPath: string }
  | {
      readonly name: 'serve';
      readonly configPath: string;
      readonly id: string;
      readonly join: boolean;
    }
  | (AdminCommand & { readonly target: AdminTarget });

const isHelp = (arg: string): boolean => arg === '--help' || arg === '-h' || arg === 'help';

interface Spec {
  readonly values: readonly string[];
  readonly switches: readonly string[];
  /** Names of the positional arguments, in order; a trailing '?' marks an optional one. */
  readonly positionals: readonly string[];
}

const TARGET_FLAGS = ['--config', '--endpoints', '--timeout-ms'];

const SPECS: Readonly<Record<string, Spec>> = {
  cluster: { values: ['--config'], switches: [], positionals: [] },
  serve: { values: ['--config', '--node'], switches: ['--join'], positionals: [] },
  status: { values: TARGET_FLAGS, switches: [], positionals: [] },
  'member add': {
    values: [...TARGET_FLAGS, '--peer-address', '--client-address'],
    switches: [],
    positionals: ['ID'],
  },
  'member remove': { values: TARGET_FLAGS, switches: [], positionals: ['ID'] },
  'leader transfer': { values: TARGET_FLAGS, switches: [], positionals: ['ID?'] },
};

const GROUPS: Readonly<Record<string, readonly string[]>> = {
  member: ['add', 'remove'],
  leader: ['transfer'],
};

interface Parsed {
  readonly values: Map<string, string>;
  readonly switches: Set<string>;
  readonly positionals: string[];
}

/** Parses argv (without node and script); a string is a usage error naming what is wrong. */
export function parseCommand(args: readonly string[]): Command | string {
  const [first, ...afterFirst] = args;
  if (first === undefined) return 'no command given';
  if (isHelp(first) || afterFirst.some(isHelp)) return { name: 'help' };
  const group = GROUPS[first];
  let name = first;
  let rest = afterFirst;
  if (group !== undefined) {
    const [sub, ...afterSub] = afterFirst;
    if (sub === undefined || !group.includes(sub)) {
      return `dlm ${first}: expected one of ${group.join(', ')}${sub === undefined ? '' : `, got '${sub}'`}`;
    }
    name = `${first} ${sub}`;
    rest = afterSub;
  }
  const spec = SPECS[name];
  if (spec === undefined) return `dlm: unknown command '${first}'`;
  const parsed = parseArgs(rest, spec);
  if (typeof parsed === 'string') return `dlm ${name}: ${parsed}`;
  return build(name, parsed);
}

function build(name: string, { values, switches, positionals }: Parsed): Command | string {
  const configPath = values.get('--config') ?? DEFAULT_CONFIG_PATH;
  if (name === 'cluster') return { name, configPath };
  if (name === 'serve') {
    const id = values.get('--node');
    if (!values.has('--config')) return 'dlm serve: --config FILE is required';
    if (id === undefined) return 'dlm serve: --node ID is required';
    return { name, configPath, id, join: switches.has('--join') };
  }
  const target = adminTarget(name, values, configPath);
  if (typeof target === 'string') return target;
  const id = positionals[0] ?? null;
  switch (name) {
    case 'status':
      return { name, target };
    case 'member add':
      return {
        name,
        target,
        id: id ?? '',
        peerAddress: values.get('--peer-address') ?? null,
        clientAddress: values.get('--client-address') ?? null,
      };
    case 'member remove':
      return { name, target, id: id ?? '' };
    default:
      return { name: 'leader transfer', target, id };
  }
}

function adminTarget(
  name: string,
  values: Map<string, string>,
  configPath: string,
): AdminTarget | string {
  const endpoints = (values.get('--endpoints') ?? '')
    .split(',')
    .map((each) => each.trim())
    .filter((each) => each !== '');
  const timeout = values.get('--timeout-ms');
  const timeoutMs = timeout === undefined ? DEFAULT_ADMIN_TIMEOUT_MS : Number(timeout);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    return `dlm ${name}: --timeout-ms must be a positive whole number of milliseconds, got '${timeout}'`;
  }
  for (const endpoint of endpoints) {
    const parsed = parseAddress(endpoint);
    if (!parsed.ok) return `dlm ${name}: --endpoints: ${parsed.problem}`;
  }
  return { configPath, endpoints, timeoutMs };
}

function parseArgs(args: readonly string[], spec: Spec): Parsed | string {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (spec.switches.includes(arg)) switches.add(arg);
    else if (spec.values.includes(arg)) {
      const value = args[++i];
      if (value === undefined || value.startsWith('--')) return `${arg} needs a value`;
      values.set(arg, value);
    } else if (arg.startsWith('-')) return `unknown option '${arg}'`;
    else if (positionals.length < spec.positionals.length) positionals.push(arg);
    else return `unexpected argument '${arg}'`;
  }
  const missing = spec.positionals.slice(positionals.length).find((each) => !each.endsWith('?'));
  if (missing !== undefined) return `${missing} is required`;
  return { values, switches, positionals };
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
      default: {
        const { runAdmin } = await import('./admin.ts');
        return await runAdmin(command, io);
      }
    }
  } catch (error) {
    io.err(`dlm ${command.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return exitFailed;
  }
}
