/**
 * A small deterministic harness for paper-style Raft tests (etcd-io/raft's `network`).
 *
 * Every node is a real `Raft` over a `MemoryStorage`. The host loop is the one ready.ts
 * prescribes: send the early messages, persist (snapshot, entries, hard state), report
 * it persisted, send the rest, apply, then `advance`. Messages travel through one FIFO queue, so a run depends only on the seed
 * of the `Prng` the network is given (election timeouts are the only randomness).
 *
 * While it runs, the harness checks two of Figure 3's properties on every Ready, so that
 * every test that uses it also checks them:
 * - Election Safety: at most one leader per term, ever.
 * - State Machine Safety: no two nodes apply different entries at one index, and each
 *   node applies indexes in order without gaps.
 */
import type { RaftLog } from '../../src/raft/log.ts';
import type { RaftOptions } from '../../src/raft/options.ts';
import { type ProposeResult, Raft, type RaftConfig } from '../../src/raft/raft.ts';
import type { Ready } from '../../src/raft/ready.ts';
import { MemoryStorage } from '../../src/raft/storage.ts';
import type {
  ClusterConfig,
  Entry,
  HardState,
  Message,
  MessageOf,
  MessageType,
  ReadState,
  Snapshot,
  SnapshotMetadata,
} from '../../src/raft/types.ts';
import {
  type LogIndex,
  logIndex,
  type NodeId,
  nodeId,
  type Term,
  term,
} from '../../src/util/ids.ts';
import type { Prng } from '../../src/util/prng.ts';

// ------------------------------------------------------------------ small builders

export function ids<const T extends readonly string[]>(...names: T): { [K in keyof T]: NodeId } {
  return names.map((name) => nodeId(name)) as { [K in keyof T]: NodeId };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function text(data: Uint8Array): string {
  return decoder.decode(data);
}

/** A normal entry; its data defaults to `e<index>@<term>` so that entries are easy to tell apart. */
export function entry(index: number, entryTerm: number, data?: string): Entry {
  return {
    kind: 'normal',
    index: logIndex(index),
    term: term(entryTerm),
    data: bytes(data ?? `e${index}@${entryTerm}`),
  };
}

/**
 * Storage for a founding member whose log already holds entries 2.. with the given
 * terms (index 1 is the bootstrap snapshot, term 1). Used to build the paper's figures.
 */
export function storageWithLog(
  config: { voters: readonly NodeId[]; learners?: readonly NodeId[] },
  termsFromIndex2: readonly number[],
  hardState: { term: number; votedFor?: NodeId | null; commitIndex?: number },
): MemoryStorage {
  const storage = MemoryStorage.bootstrap({
    voters: config.voters,
    learners: config.learners ?? [],
  });
  storage.append(termsFromIndex2.map((entryTerm, i) => entry(i + 2, entryTerm)));
  storage.setHardState({
    term: term(hardState.term),
    votedFor: hardState.votedFor ?? null,
    commitIndex: logIndex(hardState.commitIndex ?? 1),
  });
  return storage;
}

/** Terms of every entry in storage from firstIndex to lastIndex. */
export function storedTerms(storage: MemoryStorage): number[] {
  const first = storage.firstIndex();
  const last = storage.lastIndex();
  if (last < first) return [];
  return storage.entries(first, logIndex(last + 1), Number.MAX_SAFE_INTEGER).map((e) => e.term);
}

/** Terms of every entry the core's log holds (stable and unstable) from firstIndex on. */
export function logTerms(log: RaftLog): number[] {
  const terms: number[] = [];
  for (let i = log.firstIndex(); i <= log.lastIndex(); i++) {
    const t = log.term(logIndex(i));
    if (t === undefined) throw new Error(`no term at ${i}`);
    terms.push(t);
  }
  return terms;
}

/** The state machine the harness applies: the data of each normal entry, in order. */
export function encodeState(state: readonly string[]): Uint8Array {
  return bytes(JSON.stringify(state));
}

export function decodeState(data: Uint8Array): string[] {
  return data.byteLength === 0 ? [] : (JSON.parse(text(data)) as string[]);
}

// ------------------------------------------------------------------ message builders

type Fields<T extends MessageType> = Omit<MessageOf<T>, 'type' | 'from' | 'to' | 'term'>;

/** Builds a message with defaults for the fields a test does not care about. */
export const msg = {
  requestVote(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    fields: Partial<Fields<'RequestVote'>> = {},
  ): MessageOf<'RequestVote'> {
    return {
      type: 'RequestVote',
      from,
      to,
      term: term(msgTerm),
      preVote: false,
      lastLogIndex: logIndex(1),
      lastLogTerm: term(1),
      leadershipTransfer: false,
      ...fields,
    };
  },
  voteResponse(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    granted: boolean,
    preVote = false,
  ): MessageOf<'RequestVoteResponse'> {
    return { type: 'RequestVoteResponse', from, to, term: term(msgTerm), granted, preVote };
  },
  append(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    fields: Partial<Fields<'AppendEntries'>> = {},
  ): MessageOf<'AppendEntries'> {
    return {
      type: 'AppendEntries',
      from,
      to,
      term: term(msgTerm),
      prevLogIndex: logIndex(1),
      prevLogTerm: term(1),
      entries: [],
      leaderCommit: logIndex(1),
      ...fields,
    };
  },
  appendResponse(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    fields: Partial<Fields<'AppendEntriesResponse'>> = {},
  ): MessageOf<'AppendEntriesResponse'> {
    return {
      type: 'AppendEntriesResponse',
      from,
      to,
      term: term(msgTerm),
      success: true,
      matchIndex: logIndex(0),
      rejectedIndex: logIndex(0),
      hintIndex: logIndex(0),
      hintTerm: null,
      ...fields,
    };
  },
  heartbeat(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    fields: Partial<Fields<'Heartbeat'>> = {},
  ): MessageOf<'Heartbeat'> {
    return {
      type: 'Heartbeat',
      from,
      to,
      term: term(msgTerm),
      leaderCommit: logIndex(1),
      readSequence: 0,
      ...fields,
    };
  },
  installSnapshot(
    from: NodeId,
    to: NodeId,
    msgTerm: number,
    metadata: SnapshotMetadata,
    fields: Partial<Fields<'InstallSnapshot'>> = {},
  ): MessageOf<'InstallSnapshot'> {
    return {
      type: 'InstallSnapshot',
      from,
      to,
      term: term(msgTerm),
      metadata,
      offset: 0,
      round: 0,
      chunk: new Uint8Array(0),
      done: true,
      ...fields,
    };
  },
};

export function ofType<T extends MessageType>(
  messages: readonly Message[],
  type: T,
): MessageOf<T>[] {
  return messages.filter((m): m is MessageOf<T> => m.type === type);
}

// ------------------------------------------------------------------ a lone node

/**
 * Runs one Ready cycle of a node that is not on a network: persists into `storage`,
 * advances, and returns the Ready (so a test can look at its messages).
 */
export function drain(raft: Raft, storage: MemoryStorage): Ready {
  const ready = raft.ready();
  persist(raft, storage, ready);
  raft.advance(ready);
  return ready;
}

/** Every message of a Ready, early ones first, as a host sends them. */
export function sentBy(ready: Ready): Message[] {
  return [...ready.earlyMessages, ...ready.messages];
}

/** Writes a Ready into storage and reports it durable (ready.ts, steps 2 and 3). */
function persist(raft: Raft, storage: MemoryStorage, ready: Ready): void {
  if (ready.snapshot !== null) storage.applySnapshot(ready.snapshot);
  storage.append(ready.entries);
  if (ready.hardState !== null) storage.setHardState(ready.hardState);
  const last = ready.entries.at(-1);
  if (last !== undefined) raft.persisted(last.index, last.term);
}

// ------------------------------------------------------------------ the network

export interface TestNode {
  readonly id: NodeId;
  raft: Raft;
  readonly storage: MemoryStorage;
  readonly options: Partial<RaftOptions>;
  readonly prng: Prng;
  /** Committed entries applied since the last snapshot was applied (or the last restart). */
  applied: Entry[];
  /** The state machine: data of every normal entry applied, restored from snapshots. */
  state: string[];
  lastAppliedIndex: LogIndex;
  readonly readStates: ReadState[];
  /** Contexts of reads the core said it will never serve. */
  readonly refusedReads: string[];
  readonly appliedSnapshots: SnapshotMetadata[];
}

export interface NetworkConfig {
  readonly prng: Prng;
  readonly voters: readonly string[];
  readonly learners?: readonly string[];
  readonly options?: Partial<RaftOptions>;
  /** Pre-built storage for some nodes (e.g. the logs of Figure 7); others bootstrap. */
  readonly storages?: Readonly<Record<string, MemoryStorage>>;
  /** Builds each node's core; a test passes a planted bug's subclass. */
  readonly createRaft?: (config: RaftConfig) => Raft;
}

export type MessageFilter = (message: Message) => boolean;

/** Test options: small timeouts, PreVote and CheckQuorum on unless a test turns them off. */
export const TEST_OPTIONS: Partial<RaftOptions> = {
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  preVote: true,
  checkQuorum: true,
};

export class Network {
  readonly prng: Prng;
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages sent and not yet delivered, in send order. */
  readonly inFlight: Message[] = [];
  /** Every message any node sent (delivered or not), for assertions. */
  readonly sent: Message[] = [];
  /** Every message the network dropped. */
  readonly dropped: Message[] = [];
  /** Every message delivered to a node, in delivery order. */
  readonly delivered: Message[] = [];
  private readonly isolated = new Set<NodeId>();
  private readonly droppedTo = new Set<NodeId>();
  private readonly filters = new Set<MessageFilter>();
  /** Election Safety bookkeeping: the leader seen in each term. */
  private readonly leaderOfTerm = new Map<Term, NodeId>();
  /** State Machine Safety bookkeeping: the entry applied at each index, by anyone. */
  private readonly appliedAt = new Map<LogIndex, Entry>();
  private readonly defaultOptions: Partial<RaftOptions>;
  private readonly createRaft: (config: RaftConfig) => Raft;

  constructor(config: NetworkConfig) {
    this.prng = config.prng;
    this.createRaft = config.createRaft ?? ((raftConfig) => new Raft(raftConfig));
    this.defaultOptions = { ...TEST_OPTIONS, ...config.options };
    const clusterConfig: ClusterConfig = {
      voters: config.voters.map(nodeId),
      learners: (config.learners ?? []).map(nodeId),
    };
    for (const id of [...clusterConfig.voters, ...clusterConfig.learners]) {
      const storage = config.storages?.[id] ?? MemoryStorage.bootstrap(clusterConfig);
      this.addNode(id, storage);
    }
  }

  /** Adds a node (by default a joining one that knows nothing until the leader's snapshot). */
  addNode(
    id: NodeId,
    storage: MemoryStorage = MemoryStorage.joining(),
    options?: Partial<RaftOptions>,
  ): TestNode {
    if (this.nodes.has(id)) throw new Error(`node ${id} already exists`);
    const nodeOptions = { ...this.defaultOptions, ...options };
    const prng = this.prng.fork();
    const snapshot = storage.snapshot();
    const node: TestNode = {
      id,
      raft: this.createRaft({ id, storage, prng, options: nodeOptions }),
      storage,
      options: nodeOptions,
      prng,
      applied: [],
      state: decodeState(snapshot.data),
      lastAppliedIndex: snapshot.metadata.index,
      readStates: [],
      refusedReads: [],
      appliedSnapshots: [],
    };
    this.nodes.set(id, node);
    return node;
  }

  /**
   * Restarts a node from what it persisted: a new Raft over the same storage, and a state
   * machine rebuilt from the stored snapshot. Messages in flight to it are kept.
   */
  restart(id: NodeId): Raft {
    const node = this.node(id);
    const snapshot = node.storage.snapshot();
    node.raft = this.createRaft({
      id,
      storage: node.storage,
      prng: node.prng,
      options: node.options,
    });
    node.applied = [];
    node.state = decodeState(snapshot.data);
    node.lastAppliedIndex = snapshot.metadata.index;
    return node.raft;
  }

  node(id: NodeId): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** The data of the normal entries node `id` has applied, snapshots included. */
  state(id: NodeId): string[] {
    return this.node(id).state;
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()];
  }

  leaders(): NodeId[] {
    return this.ids().filter((id) => this.raft(id).role === 'leader');
  }

  // -------------------------------------------------------------- faults

  /** Cuts every message to and from `id`. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Drops every message to `id`. */
  dropTo(id: NodeId): void {
    this.droppedTo.add(id);
  }

  /** Drops every message the filter matches; returns a function that removes the filter. */
  dropIf(filter: MessageFilter): () => void {
    this.filters.add(filter);
    return () => this.filters.delete(filter);
  }

  /** Removes every partition, drop rule and filter. */
  heal(): void {
    this.isolated.clear();
    this.droppedTo.clear();
    this.filters.clear();
  }

  private blocked(message: Message): boolean {
    if (!this.nodes.has(message.to)) return true;
    if (this.isolated.has(message.from) || this.isolated.has(message.to)) return true;
    if (this.droppedTo.has(message.to)) return true;
    for (const filter of this.filters) if (filter(message)) return true;
    return false;
  }

  // -------------------------------------------------------------- the host loop

  /** One Ready cycle for one node, in ready.ts order. Returns null when it had nothing to do. */
  processReady(id: NodeId): Ready | null {
    const node = this.node(id);
    if (!node.raft.hasReady()) return null;
    const ready = node.raft.ready();
    // 1. Send what need not wait.
    this.send(ready.earlyMessages);
    // 2 and 3. Persist, and report it durable.
    persist(node.raft, node.storage, ready);
    // 4. Send the rest.
    this.send(ready.messages);
    // 5. Apply.
    if (ready.snapshot !== null) this.applySnapshot(node, ready.snapshot);
    for (const committed of ready.committedEntries) this.applyEntry(node, committed);
    // 6. Reads.
    node.readStates.push(...ready.readStates);
    node.refusedReads.push(...ready.refusedReads);
    node.raft.advance(ready);
    this.checkElectionSafety(node);
    return ready;
  }

  private send(messages: readonly Message[]): void {
    for (const message of messages) {
      this.sent.push(message);
      if (this.blocked(message)) this.dropped.push(message);
      else this.inFlight.push(message);
    }
  }

  private applySnapshot(node: TestNode, snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    if (index <= node.lastAppliedIndex) throw new Error(`${node.id} applies old snapshot ${index}`);
    node.state = decodeState(snapshot.data);
    node.applied = [];
    node.lastAppliedIndex = index;
    node.appliedSnapshots.push(snapshot.metadata);
  }

  private applyEntry(node: TestNode, committed: Entry): void {
    if (committed.index !== node.lastAppliedIndex + 1) {
      throw new Error(`${node.id} applies ${committed.index} after ${node.lastAppliedIndex}`);
    }
    const earlier = this.appliedAt.get(committed.index);
    if (earlier !== undefined && !sameEntry(earlier, committed)) {
      throw new Error(
        `State Machine Safety: ${node.id} applies ${describeEntry(committed)} where another node applied ${describeEntry(earlier)}`,
      );
    }
    this.appliedAt.set(committed.index, committed);
    node.applied.push(committed);
    node.lastAppliedIndex = committed.index;
    if (committed.kind === 'normal') node.state.push(text(committed.data));
  }

  private checkElectionSafety(node: TestNode): void {
    if (node.raft.role !== 'leader') return;
    const earlier = this.leaderOfTerm.get(node.raft.term);
    if (earlier !== undefined && earlier !== node.id) {
      throw new Error(
        `Election Safety: ${earlier} and ${node.id} both lead term ${node.raft.term}`,
      );
    }
    this.leaderOfTerm.set(node.raft.term, node.id);
  }

  /** Processes Ready on every node, repeating until none has anything left to do. */
  processReadies(): void {
    for (let round = 0; ; round++) {
      if (round > 1000) throw new Error('a node keeps producing Ready');
      let any = false;
      for (const id of this.ids()) if (this.processReady(id) !== null) any = true;
      if (!any) return;
    }
  }

  /**
   * Processes every node's Ready, then delivers every message in flight (in send order).
   * Messages the deliveries produce wait for the next call. Returns how many were delivered.
   */
  deliverAll(): number {
    this.processReadies();
    const batch = this.inFlight.splice(0);
    let count = 0;
    for (const message of batch) {
      if (this.blocked(message)) {
        this.dropped.push(message);
        continue;
      }
      this.delivered.push(message);
      this.raft(message.to).step(message);
      count++;
    }
    return count;
  }

  /** Delivers messages until no node has a Ready and nothing is in flight. */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      this.processReadies();
      if (this.inFlight.length === 0) return;
      this.deliverAll();
    }
    throw new Error(`network did not stabilize within ${maxRounds} rounds`);
  }

  /** Ticks every node once per round, letting the network settle after each round. */
  tickAll(rounds = 1): void {
    for (let round = 0; round < rounds; round++) {
      for (const id of this.ids()) this.raft(id).tick();
      this.stabilize();
    }
  }

  /** Ticks every node until `done` holds (checked after each settled round). Returns the rounds taken. */
  tickUntil(done: () => boolean, roundsMax = 1000): number {
    for (let round = 0; round < roundsMax; round++) {
      if (done()) return round;
      this.tickAll(1);
    }
    if (done()) return roundsMax;
    throw new Error(`condition not reached within ${roundsMax} rounds`);
  }

  /** Makes `id` campaign now and settles the network; the node must end up leading. */
  elect(id: NodeId): Raft {
    this.raft(id).campaign();
    this.stabilize();
    const raft = this.raft(id);
    if (raft.role !== 'leader')
      throw new Error(`${id} did not win: it is ${raft.role} in term ${raft.term}`);
    return raft;
  }

  propose(id: NodeId, data: string): ProposeResult {
    return this.raft(id).propose(bytes(data));
  }

  /**
   * What a host does to compact: snapshot the state machine at the applied index, with
   * the configuration as of that index, then drop the log up to it.
   */
  snapshotAndCompact(id: NodeId): Snapshot {
    const node = this.node(id);
    const index = node.raft.log.appliedIndex;
    const snapshot = node.storage.createSnapshot(index, node.raft.config, encodeState(node.state));
    node.storage.compact(index);
    return snapshot;
  }

  /** Messages sent so far that match a type (and optionally a sender and receiver). */
  sentOf<T extends MessageType>(
    type: T,
    route: { from?: NodeId; to?: NodeId } = {},
  ): MessageOf<T>[] {
    return ofType(this.sent, type).filter(
      (m) =>
        (route.from === undefined || m.from === route.from) &&
        (route.to === undefined || m.to === route.to),
    );
  }

  /** Forgets the message logs (not what is in flight). */
  clearLogs(): void {
    this.sent.length = 0;
    this.dropped.length = 0;
    this.delivered.length = 0;
  }
}

function sameEntry(a: Entry, b: Entry): boolean {
  return describeEntry(a) === describeEntry(b);
}

function describeEntry(e: Entry): string {
  switch (e.kind) {
    case 'normal':
      return `${e.index}@${e.term}:normal:${text(e.data)}`;
    case 'noop':
      return `${e.index}@${e.term}:noop`;
    case 'config':
      return `${e.index}@${e.term}:config:${e.change.type}:${e.change.nodeId}`;
  }
}

/** A hard state literal with branded fields. */
export function hardState(hsTerm: number, votedFor: NodeId | null, commitIndex: number): HardState {
  return { term: term(hsTerm), votedFor, commitIndex: logIndex(commitIndex) };
}

// ------------------------------------------------------------------ lone nodes

/**
 * A node that is not on a network: the test steps messages into it and reads what it
 * sends with `drain`. Storage defaults to a fresh founding member of `voters`.
 */
export function loneRaft(
  id: NodeId,
  voters: readonly NodeId[],
  prng: Prng,
  options: Partial<RaftOptions> = {},
  storage: MemoryStorage = MemoryStorage.bootstrap({ voters, learners: [] }),
): { raft: Raft; storage: MemoryStorage } {
  const raft = new Raft({ id, storage, prng, options: { ...TEST_OPTIONS, ...options } });
  return { raft, storage };
}

/**
 * Makes a lone node leader by handing it the votes of every other voter (pre-votes
 * first when PreVote is on), then drains its Ready.
 */
export function makeLeader(raft: Raft, storage: MemoryStorage, preVote: boolean): void {
  const others = raft.config.voters.filter((v) => v !== raft.id);
  raft.campaign();
  if (preVote) {
    for (const voter of others) {
      if (raft.role === 'preCandidate')
        raft.step(msg.voteResponse(voter, raft.id, raft.term + 1, true, true));
    }
  }
  for (const voter of others) {
    if (raft.role === 'candidate') raft.step(msg.voteResponse(voter, raft.id, raft.term, true));
  }
  if (raft.role !== 'leader') throw new Error(`${raft.id} did not become leader`);
  drain(raft, storage);
}
