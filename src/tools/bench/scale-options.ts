import { CLIENTS_PER_CELL_MAX } from './cells.ts';

/** The scale cells' options (issue 12 point 5); parsed by options.ts. */
export type ScaleCellName = 'sessions' | 'locks' | 'ramp';

export const SCALE_CELLS: readonly ScaleCellName[] = ['sessions', 'locks', 'ramp'];

export interface ScaleOptions {
  /** The scale cells to run, each on a fresh cluster; empty: the pair cells run instead. */
  readonly cells: readonly ScaleCellName[];
  readonly sessions: number;
  readonly holdSeconds: number;
  readonly locks: number;
  readonly lockSessions: number;
  readonly lockSessionTtlMs: number;
  /** The locks cluster's runtime.snapshotEntriesThreshold; null: dlm's default. */
  readonly snapshotEntries: number | null;
  /** The locks cluster's runtime.snapshotEntriesMax; null: dlm's default. */
  readonly snapshotEntriesMax: number | null;
  /** Opens, acquires and closes in flight at once, per worker. */
  readonly concurrency: number;
  readonly rampMax: number;
  readonly rampP99Ms: number;
}

export const SCALE_DEFAULTS: ScaleOptions = {
  cells: [],
  sessions: 10_000,
  holdSeconds: 60,
  locks: 100_000,
  lockSessions: 200,
  lockSessionTtlMs: 60_000,
  snapshotEntries: null,
  snapshotEntriesMax: null,
  concurrency: 128,
  rampMax: 256,
  rampP99Ms: 50,
};

export const SCALE_HELP = `
Scale cells (issue 12 point 5), each on a fresh 3-node cluster of its own, instead of
the pair cells:
  --scale LIST        comma list of sessions,locks,ramp
  sessions: --sessions N live sessions (default ${SCALE_DEFAULTS.sessions}, TTL --session-ttl-ms)
            kept alive by the client library for --hold-seconds S (default ${SCALE_DEFAULTS.holdSeconds});
            reports session refreshes/s and the KeepAlive calls that carried them (the
            client batches a connection's sessions into one call), leader CPU per
            refresh and % of a core, follower CPU, RSS per node, and spurious
            expiries: every session is kept alive throughout, so any expiry (a
            KeepAlive answering a session as ended, or the nodes'
            dlm_session_expiries_total rising) is one; the run fails on any
  locks:    --locks N held locks (default ${SCALE_DEFAULTS.locks}) over --lock-sessions N sessions
            (default ${SCALE_DEFAULTS.lockSessions}, TTL --lock-session-ttl-ms, default ${SCALE_DEFAULTS.lockSessionTtlMs}: long enough to
            outlive a whole-cluster restart); reports fill rate, RSS per node, the
            newest snapshot's size and the time to encode/decode it (read from a killed
            follower's LevelDB; --snapshot-entries N sets the cluster's
            runtime.snapshotEntriesThreshold, --snapshot-entries-max N its
            runtime.snapshotEntriesMax, each default dlm's), a follower's restart
            (kill -9 → caught up → a linearizable Describe through it) and the
            whole cluster's; every lock must still be held on every node after
  ramp:     distinct-lock clients 1, 2, 4, ... up to --ramp-max N (default ${SCALE_DEFAULTS.rampMax}), --seconds
            each, after --warmup, until acquire p99 passes --ramp-p99-ms (default ${SCALE_DEFAULTS.rampP99Ms});
            names the breaking point and what ran out (leader CPU, the machine's
            CPU, fsync, the load generator, or queueing)
  --scale-concurrency N  opens, acquires and closes in flight per worker (default ${SCALE_DEFAULTS.concurrency})
Where a size exceeds a default limit (lock.sessionsMax, lock.locksMax), the generated
cluster config raises it and the output says so.
`;

type Mutable = { -readonly [K in keyof ScaleOptions]: ScaleOptions[K] };

/** Applies one scale flag; false when `flag` is not one of them. */
export function applyScaleValue(
  options: Mutable,
  flag: string,
  value: string,
  integer: (flag: string, text: string, min: number, max: number) => number,
): boolean {
  switch (flag) {
    case '--scale':
      options.cells = value.split(',').map((name) => scaleCell(name.trim()));
      return true;
    case '--sessions':
      options.sessions = integer(flag, value, 1, 1_000_000);
      return true;
    case '--hold-seconds':
      options.holdSeconds = integer(flag, value, 1, 3_600);
      return true;
    case '--locks':
      options.locks = integer(flag, value, 1, 10_000_000);
      return true;
    case '--lock-sessions':
      options.lockSessions = integer(flag, value, 1, 100_000);
      return true;
    case '--lock-session-ttl-ms':
      options.lockSessionTtlMs = integer(flag, value, 1_000, 300_000);
      return true;
    case '--snapshot-entries':
      options.snapshotEntries = integer(flag, value, 1, 100_000_000);
      return true;
    case '--snapshot-entries-max':
      options.snapshotEntriesMax = integer(flag, value, 1, 100_000_000);
      return true;
    case '--scale-concurrency':
      options.concurrency = integer(flag, value, 1, 1_024);
      return true;
    case '--ramp-max':
      options.rampMax = integer(flag, value, 1, CLIENTS_PER_CELL_MAX);
      return true;
    case '--ramp-p99-ms':
      options.rampP99Ms = integer(flag, value, 1, 60_000);
      return true;
    default:
      return false;
  }
}

function scaleCell(name: string): ScaleCellName {
  if ((SCALE_CELLS as readonly string[]).includes(name)) return name as ScaleCellName;
  throw new Error(`--scale: "${name}" is not one of ${SCALE_CELLS.join(', ')}`);
}
