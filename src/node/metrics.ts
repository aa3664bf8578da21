import client from 'prom-client';
import type { DlmNode } from './node.ts';
import type { PeerTraffic } from './peer-traffic.ts';
import type { RuntimeWatch } from './runtime-watch.ts';

/**
 * Prometheus metrics of one node (DESIGN §8). Gauges that describe state are read from
 * the node when scraped, so they cost nothing between scrapes; counters and histograms
 * are fed by the node's observer hooks and by the API.
 */
export class NodeMetrics {
  readonly registry = new client.Registry();
  readonly fsyncSeconds: client.Histogram;
  readonly proposalSeconds: client.Histogram<'outcome'>;
  readonly acquireSeconds: client.Histogram<'outcome'>;
  readonly leaderChanges: client.Counter;
  readonly expiries: client.Counter;
  readonly foreignPeerMessages: client.Counter<'reason'>;
  readonly backpressureRefusals: client.Counter<'method'>;

  /**
   * `peerTraffic`: the node's transport wrapped for counting; without it the peer
   * counters are absent. `runtime`: the process's event loop and GC; without it, so are
   * their metrics.
   */
  constructor(node: DlmNode, peerTraffic?: PeerTraffic, runtime?: RuntimeWatch) {
    const registry = this.registry;
    const labels = { node: node.id };
    registry.setDefaultLabels(labels);
    const gauge = (name: string, help: string, read: () => number): void => {
      new client.Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    };
    gauge('dlm_raft_term', 'Current Raft term.', () => node.status().term);
    gauge(
      'dlm_raft_commit_index',
      'Highest log index known committed.',
      () => node.status().commitIndex,
    );
    gauge('dlm_raft_applied_index', 'Highest log index applied.', () => node.status().appliedIndex);
    gauge('dlm_raft_is_leader', '1 on the leader, else 0.', () =>
      node.status().role === 'leader' ? 1 : 0,
    );
    gauge(
      'dlm_raft_has_leader',
      '1 while this node knows a leader (itself included), else 0.',
      () => (node.status().leaderId === null ? 0 : 1),
    );
    gauge(
      'dlm_pending_proposals',
      'Writes waiting to apply on this node.',
      () => node.pendingProposals,
    );
    gauge('dlm_sessions', 'Open sessions.', () => node.locks.sessionCount);
    gauge(
      'dlm_locks_in_use',
      'Locks with a holder, a waiter or a lock-delay.',
      () => node.locks.lockCount,
    );
    gauge('dlm_waiters', 'Acquires waiting in lock queues.', () => node.locks.waiterCount);
    gauge(
      'dlm_lock_behaviour_version',
      'Lock behaviour version in force at the applied index (raised once every member supports more).',
      () => node.locks.behaviour,
    );
    gauge(
      'dlm_lock_behaviour_max',
      "Highest lock behaviour version this node's binary applies.",
      () => node.locks.behaviourMax,
    );
    this.leaderChanges = new client.Counter({
      name: 'dlm_raft_leader_changes_total',
      help: 'Times this node saw the leader change.',
      registers: [registry],
    });
    this.expiries = new client.Counter({
      name: 'dlm_session_expiries_total',
      help: 'Sessions ended by expiry, as applied on this node.',
      registers: [registry],
    });
    this.foreignPeerMessages = new client.Counter({
      name: 'dlm_peer_messages_foreign_total',
      help: "Peer messages dropped for their cluster id: another cluster's (other_cluster), or none from a node that has not learned it (no_cluster_id).",
      labelNames: ['reason'],
      registers: [registry],
    });
    this.backpressureRefusals = new client.Counter({
      name: 'dlm_backpressure_refusals_total',
      help: "Client calls refused with RESOURCE_EXHAUSTED and a retry hint (too many writes pending, calls in flight, or uncommitted entries, or an identity's budget of refused writes spent), by method.",
      labelNames: ['method'],
      registers: [registry],
    });
    this.fsyncSeconds = new client.Histogram({
      name: 'dlm_storage_fsync_seconds',
      help: 'Latency of one synced write (a whole Ready).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.proposalSeconds = new client.Histogram({
      name: 'dlm_proposal_seconds',
      help: 'Time from a write reaching this node to its entry being applied here.',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    this.acquireSeconds = new client.Histogram({
      name: 'dlm_acquire_seconds',
      help: 'Acquire calls by outcome (acquired, not_acquired, error), waiting included.',
      labelNames: ['outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    });
    if (peerTraffic !== undefined) registerPeerTraffic(registry, peerTraffic);
    if (runtime !== undefined) registerRuntime(registry, runtime);
    registerMemory(registry);
    const snapshotSeconds = new client.Histogram<'step'>({
      name: 'dlm_snapshot_seconds',
      help: 'Time one snapshot took, by step: capture (copy the state; holds the node), encode (in slices, the node running between them), write (beside the log writes).',
      labelNames: ['step'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    const snapshotBytes = new client.Gauge({
      name: 'dlm_snapshot_bytes',
      help: 'Size of the last snapshot this node took of its state.',
      registers: [registry],
    });
    node.observe({
      persisted: (seconds) => this.fsyncSeconds.observe(seconds),
      proposed: (seconds, outcome) => this.proposalSeconds.observe({ outcome }, seconds),
      leaderChanged: () => this.leaderChanges.inc(),
      snapshotted: (report) => {
        snapshotSeconds.observe({ step: 'capture' }, report.captureMs / 1000);
        snapshotSeconds.observe({ step: 'encode' }, report.encodeMs / 1000);
        snapshotSeconds.observe({ step: 'write' }, report.writeMs / 1000);
        snapshotBytes.set(report.bytes);
      },
      peerMessageForeign: (_from, clusterId) =>
        this.foreignPeerMessages.inc({
          reason: clusterId === '' ? 'no_cluster_id' : 'other_cluster',
        }),
    });
    node.subscribe((_index, output) => {
      for (const event of output.events) {
        if (event.type === 'sessionEnded' && event.reason === 'expire') this.expiries.inc();
      }
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * Counters kept by the transport decorator, read when scraped (like the gauges above):
 * the decorator counts from the process's first message, before this registry exists.
 */
function registerPeerTraffic(registry: client.Registry, traffic: PeerTraffic): void {
  const counter = (
    name: string,
    help: string,
    label: 'from' | 'to',
    counts: ReadonlyMap<string, number>,
  ): void => {
    new client.Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        for (const [peer, count] of counts) this.inc({ [label]: peer }, count);
      },
    });
  };
  counter(
    'dlm_peer_messages_received_total',
    'Peer messages that arrived from each sender, counted before they are checked.',
    'from',
    traffic.received,
  );
  counter(
    'dlm_peer_messages_sent_total',
    'Peer messages handed to the transport for each recipient (it drops some when a queue is full).',
    'to',
    traffic.sent,
  );
}

/**
 * Where this process's memory is, read when scraped: RSS alone did not say whether a
 * node's 600-800 MB at 100,000 locks was live state, V8 heap not yet collected, buffers
 * or the allocator's free memory (issue 12). RSS well above heap_total plus external
 * is memory the C allocator keeps.
 */
function registerMemory(registry: client.Registry): void {
  new client.Gauge<'kind'>({
    name: 'dlm_process_memory_bytes',
    help: 'Memory of this process by kind: rss, heap_total and heap_used (V8), external (off-heap buffers V8 knows of), array_buffers (the part of external held by ArrayBuffers).',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const usage = process.memoryUsage();
      this.set({ kind: 'rss' }, usage.rss);
      this.set({ kind: 'heap_total' }, usage.heapTotal);
      this.set({ kind: 'heap_used' }, usage.heapUsed);
      this.set({ kind: 'external' }, usage.external);
      this.set({ kind: 'array_buffers' }, usage.arrayBuffers);
    },
  });
}

/**
 * The event loop's delay since the previous scrape (p50, p99, max: what its timers were
 * late by) and every GC pause by kind: a node whose loop stalls delays every call.
 */
function registerRuntime(registry: client.Registry, runtime: RuntimeWatch): void {
  new client.Gauge<'quantile'>({
    name: 'dlm_event_loop_delay_seconds',
    help: 'Event-loop delay since the previous scrape: quantile 0.5, 0.99, and 1 (the max).',
    labelNames: ['quantile'],
    registers: [registry],
    collect() {
      const delay = runtime.takeLoopDelay();
      this.set({ quantile: '0.5' }, delay.p50Ms / 1000);
      this.set({ quantile: '0.99' }, delay.p99Ms / 1000);
      this.set({ quantile: '1' }, delay.maxMs / 1000);
    },
  });
  const gcSeconds = new client.Histogram<'kind'>({
    name: 'dlm_gc_pause_seconds',
    help: 'Garbage-collection pauses of this process, by kind (minor, major, incremental, weakcb).',
    labelNames: ['kind'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
    registers: [registry],
  });
  const stalls = new client.Counter({
    name: 'dlm_event_loop_stalls_total',
    help: `Times the event loop ran nothing else for at least runtime.stallReportMsMin (${runtime.options.stallMsMin} ms).`,
    registers: [registry],
  });
  runtime.listen({
    gcPause: (kind, durationMs) => gcSeconds.observe({ kind }, durationMs / 1000),
    loopStalled: () => stalls.inc(),
  });
}
