import { existsSync } from 'node:fs';
import {
  type LockCommand,
  type LockEvent,
  type LockLimits,
  type LockMode,
  type LockResult,
  type LockSnapshot,
  LockStateMachine,
  type ReleaseReason,
} from '../../lock/index.ts';
import { decodeEntry, decodeLockSnapshot } from '../../node/entry-codec.ts';
import type { Entry } from '../../raft/types.ts';
import { LevelStorage } from '../../storage/index.ts';
import { logIndex } from '../../util/ids.ts';

/**
 * The checker's ground truth: the cluster's committed log, read from the stopped nodes'
 * LevelDB directories with the project's storage code, decoded, and replayed through the
 * pure lock state machine. Nothing a node said over the API is used here.
 */

/** One grant as the log made it, and the entry that ended it. */
export interface LogGrant {
  readonly lock: string;
  /** Decimal, as the client library names sessions. */
  readonly sessionId: string;
  readonly owner: string;
  readonly requestId: string;
  readonly mode: LockMode;
  readonly token: string;
  /** The index of the entry that made the grant. */
  readonly index: number;
  /** The entry that ended it (release, close, expiry, withdraw…); null: held at the end. */
  endIndex: number | null;
  endReason: ReleaseReason | 'withdraw' | null;
  /** 'snapshot': live in the snapshot the replay started from; its start may be earlier. */
  readonly source: 'log' | 'snapshot';
}

export interface ReplayedLog {
  /** The replay's state is known from this index on (1: the whole log; else a snapshot's). */
  readonly startIndex: number;
  readonly commitIndex: number;
  readonly grants: readonly LogGrant[];
  /**
   * The indexes of the entries that carried each client request, by requestKeyOf (a
   * retry lands again), in log order.
   */
  readonly requests: ReadonlyMap<string, readonly number[]>;
  /** What the state machine answered each lock command the replay applied, by index. */
  readonly results: ReadonlyMap<number, LockResult>;
  /** Problems in the log itself: nodes disagreeing, a committed entry nobody has. */
  readonly problems: readonly string[];
  readonly agreement: LogAgreement;
  /** Per node, what its directory held. */
  readonly nodes: readonly NodeLog[];
}

/**
 * How much of the nodes' logs the agreement check (agreedEntries) compared: 0
 * comparisons would make it vacuous.
 */
export interface LogAgreement {
  /** The lowest commit index on a node's disk: every node is compared at least up to it. */
  readonly smallestCommitIndex: number;
  /** Entry pairs found equal: at each committed index, each node whose commit covers it. */
  readonly comparisons: number;
}

/**
 * The key of a client request in `requests`: what the state machine deduplicates it by
 * (its type, session and request id; an OpenSession has no session yet). Commands
 * without a request id (KeepAlive, the timers) have none.
 */
export function requestKeyOf(command: LockCommand): string | null {
  switch (command.type) {
    case 'OpenSession':
      return requestKey('OpenSession', '', command.requestId);
    case 'Acquire':
    case 'AcquireAll':
    case 'AcquirePermits':
    case 'Campaign':
    case 'Proclaim':
    case 'Release':
    case 'CloseSession':
    case 'CancelWait':
      return requestKey(command.type, String(command.sessionId), command.requestId);
    default:
      return null;
  }
}

export function requestKey(type: string, sessionId: string, requestId: string): string {
  return `${type}/${sessionId}/${requestId}`;
}

export interface NodeLog {
  readonly id: string;
  readonly snapshotIndex: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly commitIndex: number;
}

interface LoadedNode {
  readonly info: NodeLog;
  /** The term of the last entry (or of the snapshot, when the log is empty). */
  readonly lastTerm: number;
  readonly entries: ReadonlyMap<number, Entry>;
  readonly snapshotData: Uint8Array;
}

/**
 * Reads every node's directory (the nodes must be stopped) and replays the committed
 * prefix. `commitIndexHint` is the highest commit index a node reported before the stop:
 * a commit index alone is persisted without a sync, so the disk may lag it.
 * `startRules` are the lock rules of the nodes' config file, which the nodes apply until
 * a SetRules entry puts the log's in force (the replay then follows the log's, as the
 * nodes do).
 */
export async function readCommittedLog(
  directories: readonly { readonly id: string; readonly path: string }[],
  commitIndexHint: number,
  startRules: Partial<LockLimits> = {},
): Promise<ReplayedLog> {
  const nodes: LoadedNode[] = [];
  for (const { id, path } of directories) {
    if (!existsSync(path)) continue; // Never started (a joiner, say).
    nodes.push(await loadNode(id, path));
  }
  if (nodes.length === 0) throw new Error('raft-log: no node data directory to read');
  const commitIndex = Math.max(commitIndexHint, ...nodes.map((node) => node.info.commitIndex));
  const problems: string[] = [];
  const committed = agreedEntries(nodes, commitIndex, problems);
  const replayed = replay(committed, new LockStateMachine(startRules), problems);
  return {
    ...replayed,
    startIndex: committed.startIndex,
    commitIndex,
    problems,
    agreement: {
      smallestCommitIndex: Math.min(...nodes.map((node) => node.info.commitIndex)),
      comparisons: committed.comparisons,
    },
    nodes: nodes.map((node) => node.info),
  };
}

async function loadNode(id: string, path: string): Promise<LoadedNode> {
  const storage = await LevelStorage.open(path);
  try {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    const entries = new Map<number, Entry>();
    for (const entry of storage.entries(first, logIndex(last + 1), Number.POSITIVE_INFINITY)) {
      entries.set(entry.index, entry);
    }
    const snapshot = storage.snapshot();
    return {
      info: {
        id,
        snapshotIndex: snapshot.metadata.index,
        firstIndex: first,
        lastIndex: last,
        commitIndex: storage.initialState().hardState.commitIndex,
      },
      lastTerm: storage.term(last) ?? snapshot.metadata.term,
      entries,
      snapshotData: snapshot.data,
    };
  } finally {
    await storage.close();
  }
}

interface Committed {
  readonly startIndex: number;
  readonly startSnapshot: Uint8Array;
  readonly entries: readonly Entry[];
  /** Entry pairs compared equal across nodes. */
  readonly comparisons: number;
}

/**
 * The committed entries after the earliest snapshot any node holds. A node's log may end
 * in entries that were never committed (a deposed leader's, or a follower's stopped
 * before it learned they were overwritten), so the entry at an index is taken from the
 * nodes whose own commit index covers it, which must all hold the same one (State
 * Machine Safety). Past every node's own commit index (the hint came from a node's
 * memory), it is taken from the most up-to-date log (§5.4.1: last term, then length),
 * which a leader's is. A disagreement or an index nobody holds is a problem, and the
 * replay stops before it.
 */
function agreedEntries(
  nodes: readonly LoadedNode[],
  commitIndex: number,
  problems: string[],
): Committed {
  const start = replayStart(nodes, commitIndex);
  const upToDate = nodes.reduce((a, b) =>
    b.lastTerm > a.lastTerm || (b.lastTerm === a.lastTerm && b.info.lastIndex > a.info.lastIndex)
      ? b
      : a,
  );
  const entries: Entry[] = [];
  let comparisons = 0;
  for (let index = start.index + 1; index <= commitIndex; index++) {
    const witnesses = nodes
      .filter((node) => node.info.commitIndex >= index)
      .map((node) => ({ id: node.info.id, entry: node.entries.get(index) }))
      .filter((pair): pair is { id: string; entry: Entry } => pair.entry !== undefined);
    const upToDateEntry = upToDate.entries.get(index);
    const chosen =
      witnesses[0] ??
      (upToDateEntry === undefined ? undefined : { id: upToDate.info.id, entry: upToDateEntry });
    if (chosen === undefined) {
      problems.push(`committed index ${index} (commit ${commitIndex}) is on no node's disk`);
      break;
    }
    const different = witnesses.find((pair) => !sameEntry(pair.entry, chosen.entry));
    if (different !== undefined) {
      problems.push(
        `nodes disagree at committed index ${index}: ${chosen.id} has term ${chosen.entry.term} ${chosen.entry.kind}, ${different.id} has term ${different.entry.term} ${different.entry.kind}, and both count it committed`,
      );
      break;
    }
    comparisons += Math.max(0, witnesses.length - 1);
    entries.push(chosen.entry);
  }
  return { startIndex: start.index, startSnapshot: start.snapshotData, entries, comparisons };
}

/** A new cluster's nodes hold a snapshot of the empty state at this index, made at bootstrap. */
const BOOTSTRAP_INDEX = 1;

/**
 * Where the replay starts: from the bootstrap's empty state when the nodes' logs (and
 * the copies the run kept of wiped ones, log-archive.ts) hold every entry from the one
 * after it up to the commit index between them (the Jepsen run keeps the whole log
 * behind its snapshots, so every answer can be checked), else at the earliest snapshot
 * some node holds from which they do, else at the earliest snapshot.
 */
function replayStart(
  nodes: readonly LoadedNode[],
  commitIndex: number,
): { index: number; snapshotData: Uint8Array } {
  if (coveredFrom(nodes, BOOTSTRAP_INDEX + 1) >= commitIndex)
    return { index: BOOTSTRAP_INDEX, snapshotData: new Uint8Array() };
  const bySnapshot = [...nodes].sort((a, b) => a.info.snapshotIndex - b.info.snapshotIndex);
  const start =
    bySnapshot.find(
      (node) =>
        node.info.snapshotIndex > BOOTSTRAP_INDEX &&
        coveredFrom(nodes, node.info.snapshotIndex + 1) >= commitIndex,
    ) ?? (bySnapshot[0] as LoadedNode);
  return { index: start.info.snapshotIndex, snapshotData: start.snapshotData };
}

/** The last index up to which some node holds every entry from `first` on (first - 1: none). */
function coveredFrom(nodes: readonly LoadedNode[], first: number): number {
  const spans = nodes
    .filter((node) => node.entries.size > 0)
    .map((node) => ({ from: node.info.firstIndex, to: node.info.lastIndex }))
    .sort((a, b) => a.from - b.from);
  let reach = first - 1;
  for (const span of spans) {
    if (span.from > reach + 1) break;
    reach = Math.max(reach, span.to);
  }
  return reach;
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.term !== b.term || a.kind !== b.kind) return false;
  if (a.kind === 'normal' && b.kind === 'normal') return Buffer.from(a.data).equals(b.data);
  return JSON.stringify(a) === JSON.stringify(b);
}

type Replay = Pick<ReplayedLog, 'grants' | 'requests' | 'results'>;

/**
 * Replays the committed entries through `machine` (the nodes' own LockStateMachine),
 * recording every grant with the entry that ended it, where each request landed, and
 * each entry's result.
 */
function replay(committed: Committed, machine: LockStateMachine, problems: string[]): Replay {
  const grants = new GrantBook(problems);
  if (committed.startSnapshot.length > 0) {
    const snapshot = decodeLockSnapshot(committed.startSnapshot);
    machine.restore(snapshot);
    for (const lock of snapshot.locks) {
      for (const holder of lock.holders) grants.fromSnapshot(lock.name, holder);
    }
  }
  machine.skipTo(logIndex(committed.startIndex));
  const requests = new Map<string, number[]>();
  const results = new Map<number, LockResult>();
  for (const entry of committed.entries) {
    if (entry.kind !== 'normal') {
      machine.skipTo(entry.index);
      continue;
    }
    const { command, proposalId } = decodeEntry(entry.data);
    const output = machine.apply(entry.index, command, proposalId);
    results.set(entry.index, output.result);
    const key = requestKeyOf(command);
    const landed = key === null ? undefined : requests.get(key);
    if (landed !== undefined) landed.push(entry.index);
    else if (key !== null) requests.set(key, [entry.index]);
    for (const event of output.events) grants.observe(entry.index, command, event);
  }
  return { grants: grants.all, requests, results };
}

/** The grants of the replay, each ended by the entry whose event released it. */
class GrantBook {
  readonly all: LogGrant[] = [];
  private readonly live = new Map<string, LogGrant>();

  constructor(private readonly problems: string[]) {}

  fromSnapshot(lock: string, holder: LockSnapshot['locks'][number]['holders'][number]): void {
    this.add({
      lock,
      sessionId: String(holder.sessionId),
      owner: holder.owner,
      requestId: holder.requestId,
      mode: holder.mode,
      token: String(holder.token),
      index: Number(holder.token),
      endIndex: null,
      endReason: null,
      source: 'snapshot',
    });
  }

  observe(index: number, command: LockCommand, event: LockEvent): void {
    if (event.type === 'granted') {
      this.add({
        lock: event.lock,
        sessionId: String(event.holder.sessionId),
        owner: event.holder.owner,
        requestId: event.requestId,
        mode: event.holder.mode,
        token: String(event.holder.token),
        index,
        endIndex: null,
        endReason: null,
        source: 'log',
      });
    } else if (event.type === 'released') {
      this.end(
        index,
        event.lock,
        String(event.sessionId),
        command.type === 'Withdraw' ? 'withdraw' : event.reason,
      );
    }
  }

  private add(grant: LogGrant): void {
    this.all.push(grant);
    this.live.set(`${grant.lock}/${grant.sessionId}`, grant);
  }

  private end(index: number, lock: string, sessionId: string, reason: LogGrant['endReason']): void {
    const key = `${lock}/${sessionId}`;
    const grant = this.live.get(key);
    if (grant === undefined) {
      this.problems.push(
        `index ${index} released ${lock} of session ${sessionId}, which the replay saw no grant of`,
      );
      return;
    }
    grant.endIndex = index;
    grant.endReason = reason;
    this.live.delete(key);
  }
}
