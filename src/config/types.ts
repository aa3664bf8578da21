import type { LockLimits } from '../lock/limits.ts';
import type { RaftOptions } from '../raft/options.ts';
import type { AuthConfig } from './auth.ts';
import type { TlsSection } from './tls.ts';
import type { TracingConfig } from './tracing.ts';

/** One member of the cluster. Every address is "host:port"; IPv6 hosts go in brackets. */
export interface NodeConfig {
  /** Also the name of the node's data directory, so it is restricted to safe characters. */
  readonly id: string;
  /** Where the other nodes reach this one for Raft traffic. */
  readonly peerAddress: string;
  /** Where clients reach the public gRPC API. */
  readonly clientAddress: string;
  /** Where Prometheus scrapes /metrics. */
  readonly metricsAddress: string;
  /**
   * Where this node binds its peer server; defaults to `peerAddress`. Differs from it
   * when the node is reached through something that forwards (NAT, a container port
   * map, a proxy): the others still dial `peerAddress`. Only the node itself reads it.
   */
  readonly peerListenAddress: string;
  /** Where this node binds its client API; defaults to `clientAddress` (see above). */
  readonly clientListenAddress: string;
}

/** A node as written in the file: the listen addresses are optional. */
export type NodeConfigInput = Omit<NodeConfig, 'peerListenAddress' | 'clientListenAddress'> &
  Partial<Pick<NodeConfig, 'peerListenAddress' | 'clientListenAddress'>>;

/** The core counts time in ticks; the runtime decides how long a tick is. */
export interface RaftConfig extends RaftOptions {
  readonly tickIntervalMs: number;
}

/** What the node runtime (src/node, src/transport, src/api) needs beyond the pure cores. */
export interface RuntimeConfig {
  /**
   * Snapshot and compact about every this many applied entries. The members take turns:
   * each one's snapshots fall at indexes offset by its place among the members (sorted
   * ids) times this / members, so that they do not all encode and store one at once.
   */
  readonly snapshotEntriesThreshold: number;
  /**
   * How far apart snapshots of a large state may come. A member skips its turn while the
   * log since its last snapshot holds fewer bytes than that snapshot (Raft thesis §5.1),
   * until this many entries: a 15 MB dedupe window snapshotted every 10,000 writes cost
   * more to encode and store than the writes themselves (issue 12). At or below the
   * threshold, every turn is taken.
   */
  readonly snapshotEntriesMax: number;
  /** Entries kept behind a snapshot, so a follower that is a little behind catches up from the log instead of a whole snapshot. */
  readonly compactionRetainEntries: number;
  /**
   * Log entries one compaction step deletes beyond as many as the Ready before it
   * appended (and, while no Ready waits, in each step of their own). A step is one small
   * synced write and a range clear LevelDB runs in its own thread (about 1 µs an
   * entry), which the next write waits for; smaller steps take more synced writes.
   */
  readonly compactionSliceEntries: number;
  /**
   * A snapshot is stored in LevelDB as chunks of at most this many bytes, each its own
   * synced write: LevelDB copies a value whole into its batch, log and memtable, and a
   * snapshot in one value (30 MB at 100,000 held locks) left that much in the
   * allocator after each one (issue 12). The next Raft write waits for the chunk being
   * written, so smaller chunks hold the log's writes up less while a snapshot is
   * stored, at more synced writes per snapshot (see SNAPSHOT_CHUNK_BYTES).
   */
  readonly snapshotChunkBytes: number;
  /**
   * The chunks of a snapshot installed from the leader. An install is the Ready loop's
   * own write: nothing waits beside it, but the node sends nothing (no acknowledgement,
   * no heartbeat reply) until every chunk is synced, so fewer, larger chunks end it
   * sooner (a 32 MB install: 220-269 ms at 1 MiB, 396-472 ms at 64 KiB).
   */
  readonly snapshotInstallChunkBytes: number;
  /**
   * After restoring a snapshot of at least this many bytes (at start-up, or installing
   * the leader's), the node runs a full garbage collection at once. Decoding a snapshot
   * makes several times its state in short-lived objects, which V8 would otherwise keep
   * as heap until its next major collection (issue 12). The collection holds the event
   * loop about 1 ms per MB of live heap, after a decode that took longer. 0: never.
   */
  readonly restoreCollectBytesMin: number;
  /**
   * How far V8 lets the heap grow past what its last full collection left alive before
   * it starts the next, in percent (V8's --heap-growing-percent, which NODE_OPTIONS does
   * not take). 0: V8 chooses, up to 300% with a large heap limit. 100 kept a node holding
   * 100,000 locks some 100 MB lower after a burst of writes, and cost p99 latency on a
   * small state at 64 clients (more full collections): see docs/operations.md, "Memory".
   */
  readonly heapGrowingPercent: number;
  /**
   * The heap size, in MB, that V8's growth between full collections aims at once the
   * live heap is large (used only while heapGrowingPercent is 0). After each full
   * collection the node sets V8's --heap-growing-percent so that the next one starts
   * near this size, never below 20% more than the live heap nor wider than V8's widest
   * growth for the old generation's limit (4x from 2 GB up, less below); while that fits,
   * it leaves the choice to V8. 0: never. The default, 128, kept a node holding 100,000 locks
   * under 300 MB RSS in 7 of 8 runs (280-300.1 MB), and leaves a state whose live heap
   * is under 32 MB to V8 (the pair cells' 21-40 MB: no measured cost there); a node with
   * a much larger state pays more full collections (at least one per 20% growth), so
   * raise it where memory allows.
   * It replaces V8's choice rather than capping it: under light load a live heap of 32 to
   * 128 MB may grow to about the target where V8 would collect sooner. See
   * docs/operations.md, "Memory".
   */
  readonly heapTargetMb: number;
  /**
   * A GC pause or an event-loop stall at least this long is logged on its own line
   * (`long GC pause`, `event loop stalled`), with when it began: the lines a slow call
   * is matched against (`npm run bench -- --stall-ms N` lowers it to explain a tail).
   * The loop is checked at half this interval (every 20 ms at most), so a stall is
   * logged once it outlasts this by up to that interval.
   */
  readonly stallReportMsMin: number;
  /**
   * LevelDB's write buffer (memtable; LevelDB's own default is 4 MiB). Up to two are in
   * memory at once, the full one while it is written out.
   */
  readonly storageWriteBufferBytes: number;
  /**
   * LevelDB's block cache (LevelDB's own default is 8 MiB). The node reads its database
   * only at start-up (the log and hard state are kept in memory after that; the latest
   * snapshot is read again when a follower needs it), so a cache would only hold blocks
   * read once.
   */
  readonly storageBlockCacheBytes: number;
  /**
   * While a follower that is still answering catches up (receives a snapshot, or is
   * behind), this leader keeps the log it needs, so it continues from the log instead of
   * needing another snapshot. At most this many entries beyond what compaction would
   * otherwise keep; past it the log is compacted as usual.
   */
  readonly compactionHoldEntriesMax: number;
  /** Client proposals (local or forwarded) waiting to apply on this node. Past it: RESOURCE_EXHAUSTED. */
  readonly pendingProposalsMax: number;
  /** A proposal not applied within this fails UNAVAILABLE; the client retries with the same request_id. */
  readonly proposalTimeoutMs: number;
  /** A linearizable read waits at most this long for the leader to confirm its leadership. */
  readonly readTimeoutMs: number;
  /** Client calls one node serves at once, waiting Acquires and Watch streams included. */
  readonly clientCallsInFlightMax: number;
  /** Events buffered for one Watch stream; a watcher that falls further behind is cancelled. */
  readonly watchEventsBufferedMax: number;
  /**
   * The most locks or sessions one ListLocks or ListSessions page may ask for (a larger
   * limit is INVALID_ARGUMENT); bounds what one read holds in memory and on the wire.
   */
  readonly listItemsMax: number;
  /**
   * A watcher ended for falling behind gets this long to read what was buffered and its
   * RESOURCE_EXHAUSTED; one that reads nothing is then cut off (its stream reset), so a
   * client that never reads cannot hold the buffer.
   */
  readonly watchCutoffGraceMs: number;
  /**
   * While Observe streams are open at a node, how often it confirms with a linearizable
   * read that it still follows the leader; when that fails they end UNAVAILABLE, so a
   * client reopens elsewhere (a node cut off one way keeps its leader but applies nothing).
   */
  readonly observeConfirmIntervalMs: number;
  /**
   * Calls in flight on one Lock.Session stream, not counting Acquires; past it a call is
   * refused (RESOURCE_EXHAUSTED, backpressure). Each also counts toward
   * clientCallsInFlightMax.
   */
  readonly sessionStreamCallsInFlightMax: number;
  /**
   * Acquires in flight on one Lock.Session stream, whatever their wait_ms (a retry with
   * wait_ms 0 of a request still queued waits too); past it one is refused
   * (RESOURCE_EXHAUSTED, backpressure). Bounded apart from the other calls, so that
   * waiting Acquires never crowd out a session's KeepAlives. Each also counts
   * toward clientCallsInFlightMax.
   */
  readonly sessionStreamWaitsInFlightMax: number;
  /** Sent with every backpressure RESOURCE_EXHAUSTED (trailer dlm-retry-after-ms): when to try again. */
  readonly backpressureRetryAfterMs: number;
  /** Messages queued for one peer. Past it the oldest are dropped, which Raft tolerates (it resends). */
  readonly peerQueueMessagesMax: number;
  /**
   * The largest frame the TCP peer transport sends or accepts (payload bytes). A peer
   * announcing a bigger one is disconnected; a single message bigger than this is
   * dropped by its sender. Bounds what one connection can make a node buffer.
   */
  readonly peerFrameBytesMax: number;
  /**
   * TCP peer transport: a connection not up within this is dropped and retried; an
   * inbound one not introduced by a hello within this of being accepted is closed.
   */
  readonly peerConnectTimeoutMs: number;
  /**
   * TCP peer transport: an inbound frame begun but not whole within this closes the
   * connection, freeing what it held (up to peerFrameBytesMax). Long enough for the
   * largest frame over the slowest link between nodes.
   */
  readonly peerFrameTimeoutMs: number;
  /**
   * TCP peer transport: inbound connections open at once (TLS handshakes included);
   * past it a new one is closed. Each peer keeps one, two while it reconnects.
   */
  readonly peerInboundConnectionsMax: number;
  /**
   * gRPC peer transport: the largest message (one batch of peer messages) a node sends
   * or accepts; a bigger one fails its stream, which is reopened (Raft resends). Bounds
   * what one peer stream can make a node buffer.
   */
  readonly peerMessageBytesMax: number;
  /**
   * The largest request the client API accepts; a bigger one is refused
   * (RESOURCE_EXHAUSTED) before it is decoded. Answers have no such limit: their size
   * is bounded by the lock rules (a Describe of a lock with many shared holders may
   * legally pass any fixed figure), and the client library reads them whole.
   */
  readonly clientRequestBytesMax: number;
  /** Reconnecting to a peer backs off from this delay … */
  readonly peerReconnectDelayMsMin: number;
  /** … up to this one. */
  readonly peerReconnectDelayMsMax: number;
  /** On SIGTERM a leader hands its leadership over, waiting at most this long … */
  readonly leadershipTransferTimeoutMs: number;
  /** … then calls in flight get this long to finish before the process exits. */
  readonly shutdownDrainMs: number;
  /** Browsers watching the web console (Server-Sent Events streams) at once; past it one is refused (503). */
  readonly consoleStreamsMax: number;
  /** How often the console pushes a fresh view to its watchers (and asks the other nodes for theirs). */
  readonly consoleRefreshMs: number;
  /** Locks and sessions the console lists at most; the counts are always whole. */
  readonly consoleRowsMax: number;
  /** A console stream whose browser has not taken what it was sent for this long is cut. */
  readonly consoleStreamStallMs: number;
  /** /console/view.json answers built at once; past it one is refused (503). */
  readonly consoleViewsMax: number;
}

/** A validated cluster config: frozen, every default filled in, `dataDir` absolute. */
export interface ClusterFileConfig {
  /**
   * The cluster's id, when the operator gives one: founders store it, joiners check
   * what the leader sends against it, and every start compares it with the database.
   * null: the founders generate one (see src/node/cluster-identity.ts).
   */
  readonly clusterId: string | null;
  readonly nodes: readonly NodeConfig[];
  readonly dataDir: string;
  readonly raft: RaftConfig;
  /**
   * The lock rules this node proposes. The cluster's rules are agreed through the log:
   * a leader proposes these only when none were ever set, and `dlm rules apply` on
   * demand (see LockStateMachine.rules).
   */
  readonly lock: LockLimits;
  readonly runtime: RuntimeConfig;
  /** Mutual TLS on every gRPC endpoint (and the TCP peer port); null: plaintext. */
  readonly tls: TlsSection | null;
  /** Identities, roles and per-identity limits (issue 15); null: open, as before. */
  readonly auth: AuthConfig | null;
  /**
   * How nodes carry Raft traffic to each other: gRPC streams (the default), or
   * length-prefixed frames over plain TCP (TLS when `tls` is set). Every node of a
   * cluster must use the same: neither understands the other's port.
   */
  readonly peerTransport: PeerTransportKind;
  /** OpenTelemetry span export; off unless `tracing.otlpEndpoint` is set. */
  readonly tracing: TracingConfig;
}

export const PEER_TRANSPORT_KINDS = ['grpc', 'tcp'] as const;
export type PeerTransportKind = (typeof PEER_TRANSPORT_KINDS)[number];
export const DEFAULT_PEER_TRANSPORT: PeerTransportKind = 'tcp';

/** The file as written: only `nodes` and `dataDir` are required. */
export interface ClusterConfigInput {
  readonly clusterId?: string;
  readonly peerTransport?: PeerTransportKind;
  readonly nodes: readonly NodeConfigInput[];
  readonly dataDir: string;
  readonly raft?: Partial<RaftConfig>;
  readonly lock?: Partial<LockLimits>;
  readonly runtime?: Partial<RuntimeConfig>;
  /** See AuthConfig; the file's JSON shape (roles and identities as objects). */
  readonly auth?: unknown;
}

/** etcd's default heartbeat; with the core's default ticks: 1 s election timeout, 100 ms heartbeat. */
export const DEFAULT_TICK_INTERVAL_MS = 100;

export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  snapshotEntriesThreshold: 10_000,
  snapshotEntriesMax: 100_000,
  compactionRetainEntries: 1_000,
  compactionSliceEntries: 10_000,
  snapshotChunkBytes: 64 * 1024,
  snapshotInstallChunkBytes: 1024 * 1024,
  restoreCollectBytesMin: 4 * 1024 * 1024,
  heapGrowingPercent: 0,
  heapTargetMb: 128,
  stallReportMsMin: 50,
  storageWriteBufferBytes: 4 * 1024 * 1024,
  storageBlockCacheBytes: 1024 * 1024,
  compactionHoldEntriesMax: 100_000,
  pendingProposalsMax: 4_096,
  proposalTimeoutMs: 5_000,
  readTimeoutMs: 5_000,
  clientCallsInFlightMax: 10_000,
  watchEventsBufferedMax: 1_024,
  listItemsMax: 1_000,
  watchCutoffGraceMs: 5_000,
  observeConfirmIntervalMs: 2_000,
  sessionStreamCallsInFlightMax: 1_024,
  sessionStreamWaitsInFlightMax: 1_024,
  backpressureRetryAfterMs: 100,
  peerQueueMessagesMax: 1_024,
  // 64 times the default snapshot chunk, far above any batch a healthy cluster sends.
  peerFrameBytesMax: 16 * 1024 * 1024,
  peerConnectTimeoutMs: 2_000,
  // 16 MiB (the largest frame) in 10 s needs about 13 Mbit/s.
  peerFrameTimeoutMs: 10_000,
  // 2 × 32 nodes (the most a cluster has), with room for a few strays.
  peerInboundConnectionsMax: 128,
  // As the TCP transport's frame; grpc-js's own default (4 MiB received) was in force before.
  peerMessageBytesMax: 16 * 1024 * 1024,
  // grpc-js's own default for what it receives: 250 times the largest legal request.
  clientRequestBytesMax: 4 * 1024 * 1024,
  peerReconnectDelayMsMin: 50,
  peerReconnectDelayMsMax: 2_000,
  leadershipTransferTimeoutMs: 2_000,
  shutdownDrainMs: 5_000,
  consoleStreamsMax: 16,
  consoleRefreshMs: 500,
  consoleRowsMax: 200,
  // A browser tab in the background still reads its stream; 10 s without is a dead reader.
  consoleStreamStallMs: 10_000,
  consoleViewsMax: 4,
};
