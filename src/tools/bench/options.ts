import { DEFAULT_PEER_TRANSPORT } from '../../config/types.ts';
import type { DlmClientKind } from './bench-session.ts';
import { type CellSpec, cellName, DEFAULT_CELLS, parseCell } from './cells.ts';
import { applyScaleValue, SCALE_DEFAULTS, SCALE_HELP, type ScaleOptions } from './scale-options.ts';
import type { Via } from './server-cluster.ts';
import { WORKERS_MAX } from './workers.ts';

/** Command-line options of `npm run bench`; every bad value is refused with its name. */
export interface BenchOptions {
  readonly seconds: number;
  /** Every cell runs this many times, in rounds; ratios then compare medians. */
  readonly rounds: number;
  readonly warmupPairs: number;
  readonly cells: readonly CellSpec[];
  readonly workers: number;
  /** An existing dlm cluster's client addresses; null: start a fresh one. */
  readonly endpoints: readonly string[] | null;
  /** With --endpoints: the server processes' ids, in the same order, for CPU figures. */
  readonly serverPids: readonly number[] | null;
  readonly compare: 'etcd' | null;
  readonly etcdBin: string | null;
  /** Where the JSON goes; null: results/bench-<time>.json. */
  readonly out: string | null;
  readonly sessionTtlMs: number;
  readonly waitMs: number;
  /** Which member clients call first: the leader, or a follower that forwards. */
  readonly via: Via;
  readonly dlmClient: DlmClientKind;
  /** The started dlm cluster's `peerTransport`. */
  readonly peerTransport: 'grpc' | 'tcp';
  /** Where each started dlm node writes a V8 CPU profile at exit; null: none. */
  readonly cpuProfDir: string | null;
  /** Node/V8 flags for each dlm node the bench starts (before the script). */
  readonly nodeFlags: readonly string[];
  /**
   * The started dlm cluster's runtime.stallReportMsMin, and each cell's report of the
   * pauses that long that its nodes logged; null: neither (the nodes log from 50 ms).
   */
  readonly stallMs: number | null;
  /** Settings for the `runtime` section of the started dlm cluster's config (--runtime). */
  readonly runtime: Readonly<Record<string, number>>;
  readonly keepData: boolean;
  /** How many of each cell's slowest acquires to print and record, with their times. */
  readonly slowest: number;
  readonly help: boolean;
  /** The scale cells and their sizes (scale-options.ts). */
  readonly scale: ScaleOptions;
}

export const BENCH_HELP = `npm run bench -- [options]

Measures dlm's acquire+release throughput, latency and CPU per write on a fresh local
3-node cluster (or an existing one), optionally side by side with a 3-node etcd 3.4.

Each cell runs N clients, each with its own session, looping acquire then release for
--seconds: "hot" cells share one lock (clients queue on the server), "distinct" cells
give each client its own lock. The run fails (exit 1) if two clients ever held a lock
at once or a lock's tokens did not rise, by the bench's own records.

Options:
  --seconds N         length of each cell (default 8)
  --rounds N          run all the cells N times over (default 1); the ratios then
                      compare each side's median, the table shows every round
  --warmup N          pairs run before measuring, per system (default 3000; 0 = none)
  --cells LIST        comma list of CLIENTSx-hot|CLIENTSx-distinct
                      (default ${DEFAULT_CELLS.map(cellName).join(',')})
  --workers N         worker processes that run the clients (default 1)
  --endpoints A,B,C   use this running dlm cluster instead of starting one
                      (no server CPU figures then, unless --server-pids)
  --server-pids P,Q,R with --endpoints: the nodes' process ids, in the same order,
                      so that their CPU is measured (e.g. from pgrep -f 'dlm serve')
  --compare etcd      also start a 3-node etcd and run every cell on it, alternating
                      dlm and etcd cells; needs etcd 3.4 on PATH or --etcd-bin
                      (Debian/Ubuntu: sudo apt-get install -y etcd-server)
  --etcd-bin PATH     the etcd binary to run
  --out FILE          write the JSON results here (default results/bench-<time>.json)
  --session-ttl-ms N  each client's session (or etcd lease) TTL (default 10000)
  --wait-ms N         how long one acquire may wait in a queue (default 10000)
  --via leader|follower  which member clients call (default leader; a follower
                      forwards each write to the leader: one more hop)
  --dlm-client library|raw  dlm clients use the TypeScript client library (default:
                      what users run) or plain grpc-js calls like the etcd clients
                      (no retries or settle: equal client costs for --compare)
  --peer-transport grpc|tcp  the peerTransport of the dlm cluster the bench starts
                      (default tcp, as a config that names none); run both,
                      alternating, to compare them
  --cpu-prof DIR      each dlm node the bench starts writes a V8 CPU profile
                      (.cpuprofile, open in Chrome DevTools) into DIR when it stops
  --node-flags FLAGS  Node/V8 flags for each dlm node the bench starts, one string
                      (e.g. "--max-semi-space-size=32"), to try a runtime setting
  --stall-ms N        the dlm nodes log every GC pause and event-loop stall of N ms or
                      more (runtime.stallReportMsMin; a stall shows once it
                      outlasts N by up to N/2, 20 ms at most), and each cell
                      reports them per node and what its slowest acquires (the
                      top 1%) ran during; 1..1000
  --runtime K=V,...   settings of the config's runtime section for the dlm cluster
                      the bench starts for the pair cells, each a number (e.g.
                      snapshotChunkBytes=1048576); the nodes check them as any config
                      (docs/operations.md), and a refused one stops the run
  --keep-data         keep the temp dir with the clusters' data and logs
  --slowest N         print each cell's N slowest acquires with the time each was sent
                      (ISO and epoch ms), to match stalls against the nodes' logs
                      (kept with --keep-data); always in the JSON (default 5)
  --help              this text
${SCALE_HELP}
Columns:
  pairs/s             acquire+release pairs completed per second, all clients
  acq p50/p99/max     acquire sent → grant received, ms (on a hot lock: queueing too)
  handoff p50/p99     hot lock: release sent → the next waiter's grant received, ms
  fair                grants per client min/max and Jain's index (1 = perfectly even)
  cpu/write           server CPU ms per write (a pair = 2 writes) from /proc/PID/stat:
                      L = leader, F = followers, sum = all three; lg = the load generator
  lg busy             the busiest worker's event-loop utilization: near 100% the load
                      generator set the pace (add --workers); wall-clock, so on
                      a starved machine it counts waiting for a CPU too
  viol, err           safety violations; failed calls

Progress goes to stderr, the tables to stdout, everything (release latency, per-member
CPU, error messages, the host's load) to the JSON file whose path is printed.
`;

const DEFAULTS = {
  seconds: 8,
  rounds: 1,
  warmupPairs: 3_000,
  workers: 1,
  sessionTtlMs: 10_000,
  waitMs: 10_000,
  slowest: 5,
};

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const options = {
    ...DEFAULTS,
    cells: DEFAULT_CELLS as readonly CellSpec[],
    endpoints: null as readonly string[] | null,
    serverPids: null as readonly number[] | null,
    compare: null as 'etcd' | null,
    via: 'leader' as Via,
    dlmClient: 'library' as DlmClientKind,
    peerTransport: DEFAULT_PEER_TRANSPORT as 'grpc' | 'tcp',
    cpuProfDir: null as string | null,
    nodeFlags: [] as readonly string[],
    stallMs: null as number | null,
    runtime: {} as Readonly<Record<string, number>>,
    etcdBin: null as string | null,
    out: null as string | null,
    keepData: false,
    help: false,
    scale: { ...SCALE_DEFAULTS },
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    if (flag === '--help' || flag === '-h') options.help = true;
    else if (flag === '--keep-data') options.keepData = true;
    else {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      applyValue(options, flag, value);
    }
  }
  if (options.scale.cells.length > 0 && (options.endpoints !== null || options.compare !== null)) {
    throw new Error('--scale starts fresh dlm clusters of its own: drop --endpoints and --compare');
  }
  const started = '--node-flags, --stall-ms and --runtime set up the dlm cluster the bench starts';
  const setsUp =
    options.nodeFlags.length > 0 ||
    options.stallMs !== null ||
    Object.keys(options.runtime).length > 0;
  if (options.endpoints !== null && setsUp) throw new Error(`${started}: drop --endpoints`);
  if (options.stallMs !== null && 'stallReportMsMin' in options.runtime) {
    throw new Error('--stall-ms sets runtime.stallReportMsMin: drop it from --runtime');
  }
  if (options.scale.cells.length > 0 && options.stallMs !== null) {
    throw new Error('--stall-ms reports on the pair cells: drop --scale');
  }
  if (options.scale.cells.length > 0 && Object.keys(options.runtime).length > 0) {
    throw new Error(
      "--runtime sets up the pair cells' cluster; the scale cells set theirs (e.g. --snapshot-entries): drop --scale",
    );
  }
  if (options.serverPids !== null && options.serverPids.length !== options.endpoints?.length) {
    throw new Error(
      `--server-pids needs one id per --endpoints address: got ${options.serverPids.length} ids for ${options.endpoints?.length ?? 0} endpoints`,
    );
  }
  return options;
}

type Mutable = { -readonly [K in keyof BenchOptions]: BenchOptions[K] } & {
  scale: { -readonly [K in keyof ScaleOptions]: ScaleOptions[K] };
};

function applyValue(options: Mutable, flag: string, value: string): void {
  switch (flag) {
    case '--seconds':
      options.seconds = number(flag, value, 0.1, 3_600);
      return;
    case '--rounds':
      options.rounds = integer(flag, value, 1, 100);
      return;
    case '--warmup':
      options.warmupPairs = integer(flag, value, 0, 10_000_000);
      return;
    case '--cells':
      options.cells = value.split(',').map(parseCell);
      return;
    case '--workers':
      options.workers = integer(flag, value, 1, WORKERS_MAX);
      return;
    case '--endpoints':
      options.endpoints = addresses(flag, value);
      return;
    case '--server-pids':
      options.serverPids = value.split(',').map((pid) => integer(flag, pid, 1, 2 ** 22));
      return;
    case '--compare':
      if (value !== 'etcd') throw new Error(`--compare: only "etcd" is supported, got "${value}"`);
      options.compare = 'etcd';
      return;
    case '--etcd-bin':
      options.etcdBin = value;
      return;
    case '--out':
      options.out = value;
      return;
    case '--session-ttl-ms':
      options.sessionTtlMs = integer(flag, value, 1_000, 300_000);
      return;
    case '--dlm-client':
      if (value !== 'library' && value !== 'raw') {
        throw new Error(`--dlm-client must be library or raw, got "${value}"`);
      }
      options.dlmClient = value;
      return;
    case '--via':
      if (value !== 'leader' && value !== 'follower') {
        throw new Error(`--via must be leader or follower, got "${value}"`);
      }
      options.via = value;
      return;
    case '--peer-transport':
      if (value !== 'grpc' && value !== 'tcp') {
        throw new Error(`--peer-transport must be grpc or tcp, got "${value}"`);
      }
      options.peerTransport = value;
      return;
    case '--cpu-prof':
      options.cpuProfDir = value;
      return;
    case '--node-flags':
      options.nodeFlags = nodeFlags(flag, value);
      return;
    case '--stall-ms':
      options.stallMs = integer(flag, value, 1, 1_000);
      return;
    case '--runtime':
      options.runtime = runtimeSettings(flag, value);
      return;
    case '--slowest':
      options.slowest = integer(flag, value, 0, 1_000);
      return;
    case '--wait-ms':
      options.waitMs = integer(flag, value, 0, 3_600_000);
      return;
    default:
      if (applyScaleValue(options.scale, flag, value, integer)) return;
      throw new Error(`unknown option ${flag} (see --help)`);
  }
}

/** `key=number` pairs, comma-separated: the names are the config's to check. */
function runtimeSettings(flag: string, text: string): Record<string, number> {
  const settings: Record<string, number> = {};
  for (const pair of text.split(',')) {
    const match = /^([A-Za-z][A-Za-z0-9]*)=(-?\d+(?:\.\d+)?)$/.exec(pair.trim());
    if (match === null) {
      throw new Error(`${flag} takes key=number pairs separated by commas, got "${pair}"`);
    }
    const [, key = '', number = ''] = match;
    if (Object.hasOwn(settings, key)) throw new Error(`${flag}: ${key} is given twice`);
    settings[key] = Number(number);
  }
  return settings;
}

/** Each word must be a flag: anything else would reach `node` as the script to run. */
function nodeFlags(flag: string, text: string): string[] {
  const words = text.split(/\s+/).filter((word) => word !== '');
  const stray = words.find((word) => !word.startsWith('--'));
  if (words.length === 0 || stray !== undefined) {
    throw new Error(`${flag} takes flags that each begin with --, got "${text}"`);
  }
  return words;
}

function number(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`${flag} must be a number in ${min}..${max}, got "${text}"`);
  }
  return value;
}

function integer(flag: string, text: string, min: number, max: number): number {
  const value = number(flag, text, min, max);
  if (!Number.isInteger(value)) throw new Error(`${flag} must be an integer, got "${text}"`);
  return value;
}

function addresses(flag: string, text: string): string[] {
  const list = text.split(',').map((each) => each.trim());
  for (const address of list) {
    if (!/^[^\s:]+:\d{1,5}$/.test(address)) {
      throw new Error(`${flag}: "${address}" is not host:port`);
    }
  }
  return list;
}
