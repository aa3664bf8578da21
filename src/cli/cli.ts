import { parseAddress } from '../config/address.ts';

/**
 * The `dlm` command. Argument parsing lives here as a function tests can drive; the
 * commands themselves are in serve.ts, cluster.ts, admin.ts, lock.ts and describe.ts.
 */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/**
 * Exit codes: 0 success, 1 the command failed, 2 usage error. `dlm lock` passes CMD's
 * own exit code through (128 + N when a signal N ended it), and adds two of its own,
 * from sysexits.h, so that a script can tell them from a failure of CMD's.
 */
export const exitOk = 0;
export const exitFailed = 1;
export const exitUsage = 2;
/** `dlm lock`: the lock was not acquired within --wait-ms (EX_TEMPFAIL); CMD did not run. */
export const exitNotAcquired = 75;
/** `dlm lock`: the session was lost, so CMD was stopped or never started (EX_UNAVAILABLE). */
export const exitSessionLost = 69;

export const DEFAULT_CONFIG_PATH = 'cluster.config.json';
/** How long `dlm certs init` certificates are valid: 825 days, the most browsers accept. */
export const DEFAULT_CERT_DAYS = 825;
/** How long an admin command keeps looking for the leader and waiting for its answer. */
export const DEFAULT_ADMIN_TIMEOUT_MS = 60_000;
export const DEFAULT_LOCK_TTL_MS = 10_000;
/** Like a blocking flock(1), but not forever. */
export const DEFAULT_LOCK_WAIT_MS = 60_000;
export const DEFAULT_KILL_GRACE_MS = 1_000;

/**
 * How long before the lease could end `dlm lock` stops CMD when keepalives stop getting
 * through: the kill grace (SIGTERM, then SIGKILL that long after), plus what the client
 * keeps for clock drift and timer lateness (a tenth of the TTL, here at least 500 ms).
 */
export function lockSafetyMarginMs(ttlMs: number, killGraceMs: number): number {
  return killGraceMs + Math.max(500, Math.floor(ttlMs / 10));
}

/**
 * The smallest TTL `dlm lock` accepts with this kill grace: the margin may take at most
 * half of the TTL, so that a keepalive (sent every third of the TTL) can fail once
 * without ending the session. 2 x (grace + max(500, ttl/10)) <= ttl comes to
 * ttl >= max(2 x grace + 1000, 2.5 x grace).
 */
export function minLockTtlMs(killGraceMs: number): number {
  return Math.max(2 * killGraceMs + 1_000, Math.ceil(2.5 * killGraceMs));
}

export const usage = `Usage: dlm <command> [options]

Running nodes:
  cluster [--config FILE]               run every node of FILE as its own process, with a
                                        live status line per node (npm start)
  serve --config FILE --node ID [--join]
                                        run one node as one process; --join starts it
                                        empty, to be added to a running cluster

Certificates (mutual TLS; uses the openssl command):
  certs init --out DIR [--nodes ID,...] [--clients NAME,...] [--san SAN,...] [--days N]
                                        a CA (kept if DIR has one), a certificate per node
                                        (naming its id, dlm-node://ID, and its addresses
                                        from --config) and per client (CN=NAME, default
                                        'client'); nodes default to those of --config.
                                        Then in the config: "tls": {"caFile": "DIR/ca.pem",
                                        "certFile": "DIR/nodes/{node}.pem",
                                        "keyFile": "DIR/nodes/{node}-key.pem"}

Operating a cluster (reached through --endpoints, else the clientAddress of every node
in --config):
  status [--json]                       each node's role, term, commit and applied index,
                                        and the members as the leader sees them
  member add ID [--peer-address HOST:PORT] [--client-address HOST:PORT]
                                        add a node (start it first with serve --join); the
                                        addresses default to the node's entry in --config
  member remove ID                      remove a voter or a learner
  leader transfer [ID]                  hand leadership to ID, or to the most caught-up voter
  rules [--json]                        the lock rules in force (agreed through the log,
                                        whatever each node's config says)
  rules apply                           make the lock section of --config the cluster's
                                        rules (one log entry; every node applies it)
  revoke NAME [--reason TEXT] [--json]  end every current grant of NAME through the log
                                        (the holders' sessions stay open; the next grant
                                        gets a higher token). Not retried: if the answer
                                        is lost, check with describe before revoking again

Using locks (reached the same way):
  lock NAME [NAME...] [lock options] -- CMD [ARGS...]
                                        run CMD while holding NAME, with the fencing token
                                        in DLM_FENCING_TOKEN (and DLM_LOCK, DLM_SESSION_ID);
                                        several NAMEs are taken atomically, all or none,
                                        under one token (DLM_LOCKS: their JSON list);
                                        SIGINT, SIGTERM and SIGHUP are passed on to it. If
                                        the session is lost, CMD's process group gets
                                        SIGTERM, then SIGKILL --kill-grace-ms later, before
                                        the lease can end. Exit code: CMD's (128+N if
                                        signal N ended it; 127/126 if it cannot be run),
                                        ${exitNotAcquired} if NAME was not acquired within --wait-ms (CMD
                                        did not run), ${exitSessionLost} if the session was lost (or the grant
                                        was revoked while CMD ran), 1 if dlm
                                        failed
    --ttl-ms N                          session lease (default ${DEFAULT_LOCK_TTL_MS}); CMD is stopped
                                        grace + max(500, ttl/10) ms before it could end,
                                        which may take at most half of it: at least
                                        max(2 x grace + 1000, 2.5 x grace), ${minLockTtlMs(DEFAULT_KILL_GRACE_MS)} with the
                                        default grace
    --wait-ms N                         wait up to N ms for NAME; 0 = try once (default
                                        ${DEFAULT_LOCK_WAIT_MS})
    --shared                            take NAME in shared mode (default exclusive)
    --owner TEXT                        shown to others (default: host and pid)
    --kill-grace-ms N                   between SIGTERM and SIGKILL (default ${DEFAULT_KILL_GRACE_MS})
    --limit M [--permits N]             NAME is a semaphore of M permits: hold N of them
                                        (default 1), with this grant's own token; at most
                                        M are held at once by all (DLM_PERMITS, DLM_LIMIT)

Leader election (reached the same way):
  elect NAME VALUE [elect options] -- CMD [ARGS...]
                                        campaign to lead NAME with VALUE (FIFO among the
                                        candidates), run CMD while leading, resign when it
                                        exits; the term's fencing token is in
                                        DLM_LEADER_TOKEN and DLM_FENCING_TOKEN (and
                                        DLM_ELECTION, DLM_LEADER_VALUE, DLM_SESSION_ID).
                                        Signals, stopping CMD when the session is lost,
                                        and exit codes are those of lock (${exitNotAcquired}: not
                                        elected within --wait-ms); options: --ttl-ms,
                                        --wait-ms, --owner, --kill-grace-ms as for lock
  leader NAME [--json] [--stale]        who leads NAME: session, owner, value, token
                                        (exit 0 either way; "no leader" when nobody does)
  leader NAME --watch [--count N] [--json]
                                        the leader now, then each change (elected,
                                        proclaimed, vacant), one line each, until
                                        interrupted or N lines. An election named
                                        "transfer": put an option first

Reading state (reached the same way; --json prints one JSON document with the field
names of docs/cli.md instead of a table; --stale reads the answering node's state
without confirming it is current):
  describe NAME [--json] [--stale]      who holds NAME (owner, session, token, held for)
                                        and who waits for it, or that it is free
  locks [PREFIX] [--limit N] [--after NAME] [--json] [--stale]
                                        the locks in use under PREFIX: holders, tokens,
                                        hold time, waiters; one page of N (default 100,
                                        at most the nodes' runtime.listItemsMax); the
                                        next page starts --after the last name
  sessions [--limit N] [--after ID] [--json] [--stale]
                                        live sessions: id, client name, TTL, time since
                                        the last refresh, locks held and waited for
  watch [PREFIX] [--count N] [--json]   stream grants, releases and expiries under
                                        PREFIX, one line each (JSON lines with --json),
                                        until interrupted or N events

Options:
  --config FILE                         cluster config (default ${DEFAULT_CONFIG_PATH})
  --endpoints HOST:PORT[,HOST:PORT...]  client addresses to ask instead of the config's
  --timeout-ms N                        give up after N ms (default ${DEFAULT_ADMIN_TIMEOUT_MS}); for
                                        lock, each call to the cluster gets that long
  --tls-ca FILE --tls-cert FILE --tls-key FILE
                                        mutual TLS with these PEM files; by default the
                                        config's tls section (not with --endpoints)
  -h, --help                            show this help

Exit codes:
  ${exitOk}   success
  ${exitFailed}   the command failed (the message says what went wrong and what to do);
      for revoke, the revoke may or may not have applied if the cluster did not answer
  ${exitUsage}   usage error (unknown command or option, bad value)
  ${exitNotAcquired}  lock: NAME was not acquired within --wait-ms (CMD did not run)
  ${exitSessionLost}  lock: the session was lost (CMD was stopped or never started), or the
      grant ended while CMD ran (dlm revoke, max hold): told at the release
  other lock: CMD's own exit code (128+N if signal N ended it)
`;

/** Where an admin command finds the cluster, and how long it may take. */
export interface AdminTarget {
  readonly configPath: string;
  /** Empty: use the config's client addresses. */
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  /** From --tls-ca/--tls-cert/--tls-key; null: the config's tls section, if any. */
  readonly tls: {
    readonly caFile: string;
    readonly certFile: string;
    readonly keyFile: string;
  } | null;
}

export type AdminCommand =
  | { readonly name: 'status'; readonly json: boolean }
  | {
      readonly name: 'member add';
      readonly id: string;
      readonly peerAddress: string | null;
      readonly clientAddress: string | null;
    }
  | { readonly name: 'member remove'; readonly id: string }
  | { readonly name: 'leader transfer'; readonly id: string | null }
  | { readonly name: 'rules'; readonly json: boolean }
  | { readonly name: 'rules apply' }
  | {
      readonly name: 'revoke';
      readonly lock: string;
      readonly reason: string;
      readonly json: boolean;
    };

/** What dlm lock and dlm elect share: a session, a grant, CMD run while it is held. */
export interface HoldingCommand {
  readonly target: AdminTarget;
  readonly ttlMs: number;
  readonly waitMs: number;
  /** null: host and pid. */
  readonly owner: string | null;
  readonly killGraceMs: number;
  /** CMD and its arguments; never empty. */
  readonly command: readonly string[];
}

/** `dlm lock NAME [NAME...] [options] -- CMD [ARGS...]` */
export interface LockCommand extends HoldingCommand {
  readonly name: 'lock';
  /** The first NAME. */
  readonly lock: string;
  /** Every NAME, as given, each once: more than one are taken together (AcquireAll). */
  readonly locks: readonly string[];
  readonly shared: boolean;
  /** --limit M [--permits N]: NAME is a semaphore, of which CMD holds N permits of M. */
  readonly semaphore: { readonly limit: number; readonly permits: number } | null;
}

/** `dlm elect NAME VALUE [options] -- CMD [ARGS...]` */
export interface ElectCommand extends HoldingCommand {
  readonly name: 'elect';
  readonly election: string;
  readonly value: string;
}

/** `dlm leader NAME [--watch [--count N]] [--json] [--stale]` */
export interface LeaderCommand {
  readonly name: 'leader';
  readonly target: AdminTarget;
  readonly election: string;
  readonly json: boolean;
  readonly stale: boolean;
  /** --watch: follow the changes (Observe) instead of one read. */
  readonly watch: boolean;
  /** With --watch: stop after this many messages (the first, the leader now, counts); null: until interrupted. */
  readonly count: number | null;
}

/** `dlm describe NAME` */
export interface DescribeCommand {
  readonly name: 'describe';
  readonly target: AdminTarget;
  readonly lock: string;
  readonly stale: boolean;
  readonly json: boolean;
}

/** `dlm locks [PREFIX]`, `dlm sessions`, `dlm watch [PREFIX]`: the read commands of read.ts. */
export type ReadCommand = {
  readonly target: AdminTarget;
  readonly json: boolean;
} & (
  | {
      readonly name: 'locks';
      readonly prefix: string;
      /** 0: the node's default page size. */
      readonly limit: number;
      readonly after: string;
      readonly stale: boolean;
    }
  | {
      readonly name: 'sessions';
      readonly limit: number;
      readonly after: number;
      readonly stale: boolean;
    }
  | {
      readonly name: 'watch';
      readonly prefix: string;
      /** Stop after this many events; null: until interrupted. */
      readonly count: number | null;
    }
);

export type Command =
  | { readonly name: 'help' }
  | { readonly name: 'cluster'; readonly configPath: string }
  | {
      readonly name: 'serve';
      readonly configPath: string;
      readonly id: string;
      readonly join: boolean;
    }
  | (AdminCommand & { readonly target: AdminTarget })
  | LockCommand
  | ElectCommand
  | LeaderCommand
  | DescribeCommand
  | ReadCommand
  | CertsInitCommand;

export interface CertsInitCommand {
  readonly name: 'certs init';
  readonly configPath: string;
  /** Whether --config was given (else a missing default config is not an error). */
  readonly configGiven: boolean;
  readonly outDir: string;
  /** null: every node of the config. */
  readonly nodes: readonly string[] | null;
  readonly clients: readonly string[];
  readonly sans: readonly string[];
  readonly days: number;
}

const isHelp = (arg: string): boolean => arg === '--help' || arg === '-h' || arg === 'help';

interface Spec {
  readonly values: readonly string[];
  readonly switches: readonly string[];
  /** Names of the positional arguments, in order; a trailing '?' marks an optional one. */
  readonly positionals: readonly string[];
  /** '--' ends the options, and what follows is a command to run (dlm lock). */
  readonly rest?: boolean;
  /** The last positional may be given more than once (dlm lock NAME1 NAME2 ...). */
  readonly variadic?: boolean;
}

const TARGET_FLAGS = [
  '--config',
  '--endpoints',
  '--timeout-ms',
  '--tls-ca',
  '--tls-cert',
  '--tls-key',
];

const SPECS: Readonly<Record<string, Spec>> = {
  cluster: { values: ['--config'], switches: [], positionals: [] },
  serve: { values: ['--config', '--node'], switches: ['--join'], positionals: [] },
  status: { values: TARGET_FLAGS, switches: ['--json'], positionals: [] },
  'member add': {
    values: [...TARGET_FLAGS, '--peer-address', '--client-address'],
    switches: [],
    positionals: ['ID'],
  },
  'member remove': { values: TARGET_FLAGS, switches: [], positionals: ['ID'] },
  'leader transfer': { values: TARGET_FLAGS, switches: [], positionals: ['ID?'] },
  lock: {
    values: [
      ...TARGET_FLAGS,
      '--ttl-ms',
      '--wait-ms',
      '--owner',
      '--kill-grace-ms',
      '--limit',
      '--permits',
    ],
    switches: ['--shared'],
    positionals: ['NAME'],
    rest: true,
    variadic: true,
  },
  elect: {
    values: [...TARGET_FLAGS, '--ttl-ms', '--wait-ms', '--owner', '--kill-grace-ms'],
    switches: [],
    positionals: ['NAME', 'VALUE'],
    rest: true,
  },
  // `leader transfer` is the group's subcommand: an election named "transfer" is read
  // with an option before it (dlm leader --json transfer).
  leader: {
    values: [...TARGET_FLAGS, '--count'],
    switches: ['--json', '--stale', '--watch'],
    positionals: ['NAME'],
  },
  describe: { values: TARGET_FLAGS, switches: ['--json', '--stale'], positionals: ['NAME'] },
  locks: {
    values: [...TARGET_FLAGS, '--limit', '--after'],
    switches: ['--json', '--stale'],
    positionals: ['PREFIX?'],
  },
  sessions: {
    values: [...TARGET_FLAGS, '--limit', '--after'],
    switches: ['--json', '--stale'],
    positionals: [],
  },
  watch: { values: [...TARGET_FLAGS, '--count'], switches: ['--json'], positionals: ['PREFIX?'] },
  revoke: { values: [...TARGET_FLAGS, '--reason'], switches: ['--json'], positionals: ['NAME'] },
  rules: { values: TARGET_FLAGS, switches: ['--json'], positionals: [] },
  'certs init': {
    values: ['--config', '--out', '--nodes', '--clients', '--san', '--days'],
    switches: [],
    positionals: [],
  },
  'rules apply': { values: TARGET_FLAGS, switches: [], positionals: [] },
};

/** Commands with subcommands; one that is also a command alone (rules) has a SPECS entry. */
const GROUPS: Readonly<Record<string, readonly string[]>> = {
  member: ['add', 'remove'],
  leader: ['transfer'],
  rules: ['apply'],
  certs: ['init'],
};

interface Parsed {
  readonly values: Map<string, string>;
  readonly switches: Set<string>;
  readonly positionals: string[];
  /** What followed '--'; null when there was no '--'. */
  readonly rest: string[] | null;
}

/** Parses argv (without node and script); a string is a usage error naming what is wrong. */
export function parseCommand(args: readonly string[]): Command | string {
  const [first, ...afterFirst] = args;
  if (first === undefined) return 'no command given';
  // After '--' the words are CMD's (dlm lock NAME -- grep --help), not dlm's.
  const end = afterFirst.indexOf('--');
  const options = end === -1 ? afterFirst : afterFirst.slice(0, end);
  if (isHelp(first) || options.some(isHelp)) return { name: 'help' };
  const group = GROUPS[first];
  let name = first;
  let rest = afterFirst;
  if (group !== undefined) {
    const [sub, ...afterSub] = afterFirst;
    if (sub !== undefined && group.includes(sub)) {
      name = `${first} ${sub}`;
      rest = afterSub;
    } else if (SPECS[first] === undefined) {
      return `dlm ${first}: expected one of ${group.join(', ')}${sub === undefined ? '' : `, got '${sub}'`}`;
    }
  }
  const spec = SPECS[name];
  if (spec === undefined) return `dlm: unknown command '${first}'`;
  const parsed = parseArgs(rest, spec);
  if (typeof parsed === 'string') return `dlm ${name}: ${parsed}`;
  return build(name, parsed);
}

function build(name: string, { values, switches, positionals, rest }: Parsed): Command | string {
  const configPath = values.get('--config') ?? DEFAULT_CONFIG_PATH;
  if (name === 'cluster') return { name, configPath };
  if (name === 'certs init') return buildCertsInit(values, configPath);
  if (name === 'serve') {
    const id = values.get('--node');
    if (!values.has('--config')) return 'dlm serve: --config FILE is required';
    if (id === undefined) return 'dlm serve: --node ID is required';
    return { name, configPath, id, join: switches.has('--join') };
  }
  const target = adminTarget(name, values, configPath);
  if (typeof target === 'string') return target;
  const id = positionals[0] ?? null;
  const json = switches.has('--json');
  const stale = switches.has('--stale');
  switch (name) {
    case 'lock':
      return buildLock(target, positionals, values, switches, rest);
    case 'elect':
      return buildElect(target, positionals, values, rest);
    case 'leader':
      return buildLeader(target, positionals[0] ?? '', values, switches);
    case 'describe':
      return { name, target, lock: positionals[0] ?? '', stale, json };
    case 'locks':
    case 'sessions':
    case 'watch':
      return buildRead(name, target, positionals[0] ?? '', values, json, stale);
    case 'revoke':
      return { name, target, lock: id ?? '', reason: values.get('--reason') ?? '', json };
    case 'status':
    case 'rules':
      return { name, target, json };
    case 'rules apply':
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

function buildRead(
  name: 'locks' | 'sessions' | 'watch',
  target: AdminTarget,
  prefix: string,
  values: Map<string, string>,
  json: boolean,
  stale: boolean,
): ReadCommand | string {
  const problem = (text: string): string => `dlm ${name}: ${text}`;
  if (name === 'watch') {
    const count = values.has('--count') ? wholeNumber(values, '--count', 1) : null;
    if (typeof count === 'string') return problem(count);
    return { name, target, json, prefix, count };
  }
  const limit = values.has('--limit') ? wholeNumber(values, '--limit', 1) : 0;
  if (typeof limit === 'string') return problem(limit);
  if (name === 'locks') {
    return { name, target, json, prefix, limit, after: values.get('--after') ?? '', stale };
  }
  const after = values.has('--after') ? wholeNumber(values, '--after', 0) : 0;
  if (typeof after === 'string') return problem(after);
  return { name, target, json, limit, after, stale };
}

/** A whole number of at least `min` from a flag that was given, or a problem naming it. */
function wholeNumber(values: Map<string, string>, flag: string, min: number): number | string {
  const text = values.get(flag) ?? '';
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    return `${flag} must be a whole number of at least ${min}, got '${text}'`;
  }
  return value;
}

const list = (text: string | undefined): string[] | null =>
  text === undefined
    ? null
    : text
        .split(',')
        .map((each) => each.trim())
        .filter((each) => each !== '');

function buildCertsInit(
  values: Map<string, string>,
  configPath: string,
): CertsInitCommand | string {
  const outDir = values.get('--out');
  if (outDir === undefined) return 'dlm certs init: --out DIR is required';
  const days = Number(values.get('--days') ?? DEFAULT_CERT_DAYS);
  if (!Number.isSafeInteger(days) || days <= 0 || days > 36_500) {
    return `dlm certs init: --days must be a whole number of days in 1..36500, got '${values.get('--days')}'`;
  }
  return {
    name: 'certs init',
    configPath,
    configGiven: values.has('--config'),
    outDir,
    nodes: list(values.get('--nodes')),
    clients: list(values.get('--clients')) ?? ['client'],
    sans: list(values.get('--san')) ?? [],
    days,
  };
}

function buildLock(
  target: AdminTarget,
  locks: readonly string[],
  values: Map<string, string>,
  switches: Set<string>,
  rest: string[] | null,
): LockCommand | string {
  const problem = (text: string): string => `dlm lock: ${text}`;
  const [lock = ''] = locks;
  const twice = locks.find((name, k) => locks.indexOf(name) !== k);
  // The cluster would refuse it too (a set names each lock once); say so before connecting.
  if (twice !== undefined) return problem(`NAME ${JSON.stringify(twice)} is given twice`);
  if (rest === null) {
    // Without '--' the words after NAME are CMD forgotten behind it, not more NAMEs: say
    // so as dlm lock did before it took several names.
    const [, second] = locks;
    if (second !== undefined)
      return problem(`unexpected argument '${second}' (CMD goes after '--')`);
    return problem('CMD is required: dlm lock NAME [options] -- CMD [ARGS...]');
  }
  if (rest.length === 0) return problem("CMD is required after '--'");
  const holding = buildHolding(target, values, rest);
  if (typeof holding === 'string') return problem(holding);
  const semaphore = buildSemaphore(values, switches, locks);
  if (typeof semaphore === 'string') return problem(semaphore);
  return { name: 'lock', ...holding, lock, locks, shared: switches.has('--shared'), semaphore };
}

/** `--limit M [--permits N]`: the semaphore form of dlm lock, for one NAME. */
function buildSemaphore(
  values: Map<string, string>,
  switches: Set<string>,
  locks: readonly string[],
): LockCommand['semaphore'] | string {
  if (!values.has('--limit')) {
    return values.has('--permits') ? "--permits needs --limit (the semaphore's limit)" : null;
  }
  const limit = wholeNumber(values, '--limit', 1);
  if (typeof limit === 'string') return limit;
  const permits = values.has('--permits') ? wholeNumber(values, '--permits', 1) : 1;
  if (typeof permits === 'string') return permits;
  if (permits > limit) return `--permits ${permits} is more than --limit ${limit}`;
  if (locks.length > 1) return '--limit takes one NAME (a semaphore), not a set';
  if (switches.has('--shared'))
    return "--shared is for locks; a semaphore's permits are shared by nature";
  return { limit, permits };
}

/** `dlm elect NAME VALUE [options] -- CMD [ARGS...]` */
function buildElect(
  target: AdminTarget,
  positionals: readonly string[],
  values: Map<string, string>,
  rest: string[] | null,
): ElectCommand | string {
  const problem = (text: string): string => `dlm elect: ${text}`;
  const [election = '', value = ''] = positionals;
  if (rest === null)
    return problem('CMD is required: dlm elect NAME VALUE [options] -- CMD [ARGS...]');
  if (rest.length === 0) return problem("CMD is required after '--'");
  const holding = buildHolding(target, values, rest);
  if (typeof holding === 'string') return problem(holding);
  return { name: 'elect', ...holding, election, value };
}

function buildLeader(
  target: AdminTarget,
  election: string,
  values: Map<string, string>,
  switches: Set<string>,
): LeaderCommand | string {
  const watch = switches.has('--watch');
  if (values.has('--count') && !watch) return 'dlm leader: --count goes with --watch';
  if (watch && switches.has('--stale')) {
    return 'dlm leader: --stale is for one read; --watch follows the node it is connected to';
  }
  const count = values.has('--count') ? wholeNumber(values, '--count', 1) : null;
  if (typeof count === 'string') return `dlm leader: ${count}`;
  return {
    name: 'leader',
    target,
    election,
    json: switches.has('--json'),
    stale: switches.has('--stale'),
    watch,
    count,
  };
}

/** The session and CMD options dlm lock and dlm elect share, or a problem naming the flag. */
function buildHolding(
  target: AdminTarget,
  values: Map<string, string>,
  command: readonly string[],
): HoldingCommand | string {
  const ttlMs = milliseconds(values, '--ttl-ms', DEFAULT_LOCK_TTL_MS, false);
  if (typeof ttlMs === 'string') return ttlMs;
  const waitMs = milliseconds(values, '--wait-ms', DEFAULT_LOCK_WAIT_MS, true);
  if (typeof waitMs === 'string') return waitMs;
  const killGraceMs = milliseconds(values, '--kill-grace-ms', DEFAULT_KILL_GRACE_MS, true);
  if (typeof killGraceMs === 'string') return killGraceMs;
  if (ttlMs < minLockTtlMs(killGraceMs)) {
    return `--ttl-ms ${ttlMs} is too short for --kill-grace-ms ${killGraceMs}: CMD must be stopped ${lockSafetyMarginMs(ttlMs, killGraceMs)} ms (the grace + max(500, ttl/10)) before the lease can end, which may take at most half the TTL; use --ttl-ms ${minLockTtlMs(killGraceMs)} or more, or a shorter grace`;
  }
  return { target, ttlMs, waitMs, owner: values.get('--owner') ?? null, killGraceMs, command };
}

/** A whole number of milliseconds from a flag, or a problem naming the flag. */
function milliseconds(
  values: Map<string, string>,
  flag: string,
  fallback: number,
  zeroAllowed: boolean,
): number | string {
  const text = values.get(flag);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || (!zeroAllowed && value === 0)) {
    const kind = zeroAllowed ? 'a whole number' : 'a positive whole number';
    return `${flag} must be ${kind} of milliseconds, got '${text}'`;
  }
  return value;
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
  const tlsFlags = ['--tls-ca', '--tls-cert', '--tls-key'] as const;
  const given = tlsFlags.filter((flag) => values.has(flag));
  if (given.length > 0 && given.length < tlsFlags.length) {
    const missing = tlsFlags.filter((flag) => !values.has(flag));
    return `dlm ${name}: mutual TLS needs ${tlsFlags.join(', ')} together; missing ${missing.join(', ')}`;
  }
  const tls =
    given.length === 0
      ? null
      : {
          caFile: values.get('--tls-ca') ?? '',
          certFile: values.get('--tls-cert') ?? '',
          keyFile: values.get('--tls-key') ?? '',
        };
  return { configPath, endpoints, timeoutMs, tls };
}

function parseArgs(args: readonly string[], spec: Spec): Parsed | string {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  const positionals: string[] = [];
  let rest: string[] | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--' && spec.rest === true) {
      rest = args.slice(i + 1);
      break;
    }
    if (spec.switches.includes(arg)) switches.add(arg);
    else if (spec.values.includes(arg)) {
      const value = args[++i];
      if (value === undefined || value.startsWith('--')) return `${arg} needs a value`;
      values.set(arg, value);
    } else if (arg.startsWith('-')) return `unknown option '${arg}'`;
    else if (positionals.length < spec.positionals.length || spec.variadic === true)
      positionals.push(arg);
    else if (spec.rest === true) return `unexpected argument '${arg}' (CMD goes after '--')`;
    else return `unexpected argument '${arg}'`;
  }
  const missing = spec.positionals.slice(positionals.length).find((each) => !each.endsWith('?'));
  if (missing !== undefined) return `${missing} is required`;
  return { values, switches, positionals, rest };
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
      case 'lock': {
        const { runLock } = await import('./lock.ts');
        return await runLock(command, io);
      }
      case 'elect': {
        const { runElect } = await import('./lock.ts');
        return await runElect(command, io);
      }
      case 'leader': {
        const { runLeader } = await import('./leader.ts');
        return await runLeader(command, io);
      }
      case 'certs init': {
        const { runCertsInit } = await import('./certs-init.ts');
        return await runCertsInit(command, io);
      }
      case 'describe': {
        const { runDescribe } = await import('./describe.ts');
        return await runDescribe(command, io);
      }
      case 'locks':
      case 'sessions':
      case 'watch': {
        const { runRead } = await import('./read.ts');
        return await runRead(command, io);
      }
      default: {
        const { runAdmin } = await import('./admin.ts');
        return await runAdmin(command, io);
      }
    }
  } catch (error) {
    const { explainError } = await import('./errors.ts');
    io.err(`dlm ${command.name}: ${explainError(error)}\n`);
    return exitFailed;
  }
}
