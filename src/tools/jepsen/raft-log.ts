import { existsSync } from 'node:fs';
import {
  type LockCommand,
  type LockMode,
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

/** Where a client's command landed: the entries that carried it (retries land again). */
export interface CommandPlacement {
  readonly indexes: number[];
}

export interface ReplayedLog {
  /** The replay's state is known from this index on (1: the whole log; else a snapshot's). */
  readonly startIndex: number;
  readonly commitIndex: number;
  readonly grants: readonly LogGrant[];
  /** Acquire entries by the `owner` tag the client put on each acquire op. */
  readonly acquiresByOwner: ReadonlyMap<string, CommandPlacement>;
  /** Release entries by `${lock}/${sessionId}/${token}`, and whether one released. */
  readonly releasesByGrant: ReadonlyMap<string, CommandPlacement & { released: boolean }>;
  /** Problems in the log itself: nodes disagreeing, a committed entry nobody has. */
  readonly problems: readonly string[];
  /** Per node, what its directory held. */
  readonly nodes: readonly NodeLog[];
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
 */
export async function readCommittedLog(
  directories: readonly { readonly id: string; readonly path: string }[],
  commitIndexHint: number,
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
  return replay(committed, commitIndex, problems, nodes);
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
  const start = nodes.reduce((a, b) => (b.info.snapshotIndex < a.info.snapshotIndex ? b : a));
  const upToDate = nodes.reduce((a, b) =>
    b.lastTerm > a.lastTerm || (b.lastTerm === a.lastTerm && b.info.lastIndex > a.info.lastIndex)
      ? b
      : a,
  );
  const entries: Entry[] = [];
  for (let index = start.info.snapshotIndex + 1; index <= commitIndex; index++) {
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
    entries.push(chosen.entry);
  }
  return { startIndex: start.info.snapshotIndex, startSnapshot: start.snapshotData, entries };
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.term !== b.term || a.kind !== b.kind) return false;
  if (a.kind === 'normal' && b.kind === 'normal') return Buffer.from(a.data).equals(b.data);
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Replays the committed entries through a fresh LockStateMachine and records every grant. */
function replay(
  committed: Committed,
  commitIndex: number,
  problems: string[],
  nodes: readonly LoadedNode[],
): ReplayedLog {
  const machine = new LockStateMachine();
  const grants: LogGrant[] = [];
  const live = new Map<string, LogGrant>();
  const grantKey = (lock: string, sessionId: string): string => `${lock}/${sessionId}`;
  if (committed.startSnapshot.length > 0) {
    const snapshot = decodeLockSnapshot(committed.startSnapshot);
    machine.restore(snapshot);
    for (const lock of snapshot.locks) {
      for (const holder of lock.holders) {
        const grant: LogGrant = {
          lock: lock.name,
          sessionId: String(holder.sessionId),
          owner: holder.owner,
          requestId: holder.requestId,
          mode: holder.mode,
          token: String(holder.token),
          index: Number(holder.token),
          endIndex: null,
          endReason: null,
          source: 'snapshot',
        };
        grants.push(grant);
        live.set(grantKey(grant.lock, grant.sessionId), grant);
      }
    }
  }
  machine.skipTo(logIndex(committed.startIndex));
  const acquiresByOwner = new Map<string, CommandPlacement>();
  const releasesByGrant = new Map<string, CommandPlacement & { released: boolean }>();
  for (const entry of committed.entries) {
    if (entry.kind !== 'normal') {
      machine.skipTo(entry.index);
      continue;
    }
    const { command } = decodeEntry(entry.data);
    const output = machine.apply(entry.index, command);
    place(command, entry.index, output.result.type, acquiresByOwner, releasesByGrant);
    for (const event of output.events) {
      if (event.type === 'granted') {
        const grant: LogGrant = {
          lock: event.lock,
          sessionId: String(event.holder.sessionId),
          owner: event.holder.owner,
          requestId: event.requestId,
          mode: event.holder.mode,
          token: String(event.holder.token),
          index: entry.index,
          endIndex: null,
          endReason: null,
          source: 'log',
        };
        grants.push(grant);
        live.set(grantKey(grant.lock, grant.sessionId), grant);
      } else if (event.type === 'released') {
        const grant = live.get(grantKey(event.lock, String(event.sessionId)));
        if (grant === undefined) {
          problems.push(
            `index ${entry.index} released ${event.lock} of session ${event.sessionId}, which the replay saw no grant of`,
          );
          continue;
        }
        grant.endIndex = entry.index;
        grant.endReason = command.type === 'Withdraw' ? 'withdraw' : event.reason;
        live.delete(grantKey(event.lock, String(event.sessionId)));
      }
    }
  }
  return {
    startIndex: committed.startIndex,
    commitIndex,
    grants,
    acquiresByOwner,
    releasesByGrant,
    problems,
    nodes: nodes.map((node) => node.info),
  };
}

function place(
  command: LockCommand,
  index: number,
  resultType: string,
  acquiresByOwner: Map<string, CommandPlacement>,
  releasesByGrant: Map<string, CommandPlacement & { released: boolean }>,
): void {
  if (command.type === 'Acquire') {
    const placement = acquiresByOwner.get(command.owner) ?? { indexes: [] };
    placement.indexes.push(index);
    acquiresByOwner.set(command.owner, placement);
  } else if (command.type === 'Release') {
    const key = `${command.lock}/${command.sessionId}/${command.token}`;
    const placement = releasesByGrant.get(key) ?? { indexes: [], released: false };
    placement.indexes.push(index);
    placement.released ||= resultType === 'Released';
    releasesByGrant.set(key, placement);
  }
}
