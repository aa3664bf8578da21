import { resolve } from 'node:path';
import pino, { type Logger } from 'pino';
import { Authenticator } from '../api/auth/caller.ts';
import type { ApiLogger } from '../api/errors.ts';
import { startApiServer } from '../api/server.ts';
import {
  type ClusterFileConfig,
  ConfigError,
  findNode,
  loadClusterConfig,
  lockTimingProblems,
  nodeDataDir,
} from '../config/index.ts';
import {
  bootstrapIdentity,
  checkIdentityAtStart,
  IdentityMismatchError,
} from '../node/cluster-identity.ts';
import { ConsoleActivity } from '../node/console/activity.ts';
import { startMetricsServer } from '../node/console/http.ts';
import { metricsClientTls } from '../node/console/metrics-get.ts';
import { ConsoleServer } from '../node/console/server.ts';
import { governHeapGrowth } from '../node/heap-growth.ts';
import { describeDifferences, type LockRulesReport, watchLockRules } from '../node/lock-rules.ts';
import { NodeMetrics } from '../node/metrics.ts';
import { DlmNode, type NodeRuntimeOptions } from '../node/node.ts';
import { PeerTraffic } from '../node/peer-traffic.ts';
import { RuntimeWatch, runtimeWatchOptions } from '../node/runtime-watch.ts';
import { startSpanExport } from '../node/tracing/otlp.ts';
import type { StoredIdentity } from '../storage/index.ts';
import { LevelStorage } from '../storage/index.ts';
import { assert } from '../util/assert.ts';
import { type NodeId, nodeId } from '../util/ids.ts';
import { NodeSecurity, ReloadHooks } from './node-security.ts';
import { startPeerTransport } from './peer-transport.ts';
import { rateLimitedPerKey } from './rate-limit.ts';

/**
 * `dlm serve --config FILE --node ID`: one node, one OS process, so that SIGTERM,
 * SIGKILL and SIGSTOP reach the node itself. SIGTERM (or SIGINT) hands leadership
 * over, drains, closes storage and exits 0.
 */
export interface ServeArgs {
  readonly configPath: string;
  readonly id: string;
  /** Join an existing cluster instead of founding it (the node starts empty). */
  readonly join: boolean;
}

export async function serve(args: ServeArgs): Promise<void> {
  const config = await loadClusterConfig(args.configPath);
  const self = findNode(config, args.id);
  const id = nodeId(self.id);
  // Every line carries the node's term and role; per-request lines (requestId,
  // latencyMs) are at debug level: DLM_LOG_LEVEL=debug.
  let running: DlmNode | null = null;
  const logger = pino({
    base: { nodeId: id },
    level: process.env.DLM_LOG_LEVEL ?? 'info',
    mixin: () =>
      running === null ? {} : { term: running.status().term, role: running.status().role },
  });
  const heapGrowth = governHeapGrowth(config.runtime);
  if (heapGrowth.note !== null) logger.warn(heapGrowth.note);
  // Read before anything starts, so a missing or unreadable file stops start-up with its field named.
  const security = await NodeSecurity.load(config, id, logger);
  warnIfPeersPlaintext(config, self.peerListenAddress, logger);
  const directory = nodeDataDir(config, id);
  const storage = await LevelStorage.open(directory, {
    bootstrap: args.join
      ? 'join'
      : { voters: config.nodes.map((node) => nodeId(node.id)), learners: [] },
    // Only for an empty database; a stored identity is checked below instead.
    identity: bootstrapIdentity({
      nodeId: id,
      clusterId: config.clusterId,
      founders: args.join ? null : config.nodes.map((node) => node.id),
    }),
    snapshotChunkBytes: config.runtime.snapshotChunkBytes,
    snapshotInstallChunkBytes: config.runtime.snapshotInstallChunkBytes,
    writeBufferBytes: config.runtime.storageWriteBufferBytes,
    blockCacheBytes: config.runtime.storageBlockCacheBytes,
  });
  const identity = await checkedIdentity(storage, id, config.clusterId, directory, logger);
  const transport = await startPeerTransport(config, self, security, logger);
  const logForeign = rateLimitedPerKey(FOREIGN_LOG_INTERVAL_MS);
  const peerAuthFailure = security.authFailures.listener('peer');
  const traffic = new PeerTraffic(transport);
  const node = await createNode(() => new DlmNode(id, storage, traffic, runtimeOptions(config)), {
    traffic,
    storage,
  });
  running = node;
  const runtime = new RuntimeWatch(runtimeWatchOptions(config.runtime.stallReportMsMin));
  const metrics = new NodeMetrics(node, traffic, runtime);
  security.authFailures.register(metrics.registry);
  const consoleServer = new ConsoleServer(
    node,
    new ConsoleActivity(node),
    self.metricsAddress,
    config.nodes,
    {
      streamsMax: config.runtime.consoleStreamsMax,
      refreshMs: config.runtime.consoleRefreshMs,
      rowsMax: config.runtime.consoleRowsMax,
      streamStallMs: config.runtime.consoleStreamStallMs,
      viewsMax: config.runtime.consoleViewsMax,
      // Owners and client names are for those with `read` on the lock: under auth the
      // metrics address, which authenticates no caller, does not show them.
      namesHidden: config.auth !== null,
      // The other members serve their metrics address as this one does.
      metricsTls: metricsClientTls(config.tls?.metrics ?? 'plaintext', security.store),
    },
  );
  logStalls(node, runtime, logger);
  let failed: (error: Error) => void = () => {};
  const failure = new Promise<Error>((resolve) => {
    failed = resolve;
  });
  node.observe({
    // Fatal: the process exits non-zero, and a restart reloads what is durable.
    failed,
    // Dropped before the core saw it; the node goes on.
    peerMessageRejected: (from, problem) =>
      logger.warn({ from, problem }, 'dropped a malformed peer message'),
    // A peer of another cluster (or one that does not know ours yet); rate-limited, as
    // such a peer retries many times a second. The metric counts every one.
    // A message without an id comes from a node that has not learned it yet (a founder
    // or a joiner, for its first moments), which is normal while a cluster forms.
    peerMessageForeign: (from, clusterId) =>
      logForeign(`${from}/${clusterId}`, (suppressed) => {
        const fields = { from, clusterId, ours: identity.clusterId, suppressed };
        if (clusterId === '') {
          logger.info(
            fields,
            'dropped a peer message from a node that does not know the cluster id yet',
          );
        } else logger.warn(fields, 'dropped a peer message from another cluster');
      }),
    clusterIdAdopted: (clusterId) =>
      logger.info({ clusterId }, 'learned the cluster id from a peer and saved it'),
    // Counted in dlm_auth_failures_total and logged at warn, rate-limited per sender.
    forwardFromNonMember: (from, members) =>
      peerAuthFailure(
        from,
        'not_a_member',
        `a write forwarded by ${from}, which is not a member of the cluster (members: ${members.join(', ')}), was refused: a removed node, a node certificate for an id never added, or a stranger with the cluster id; or, for a moment, a member this leader has not applied yet`,
      ),
    // The leader's span of a traced call that a follower forwarded.
    forwardedWrite: (trace, from, outcome) =>
      logger.debug(
        {
          traceId: trace.traceId,
          spanId: trace.spanId,
          parentSpanId: trace.parentSpanId,
          from,
          outcome,
        },
        'forwarded write',
      ),
  });
  watchLockRules(node, config.lock, (report) => {
    logLockRules(logger, report);
    if (report.kind === 'unset') return;
    // The log's rules passed these checks on the node that proposed them, against its
    // own timing; this node's may differ.
    const problems = lockTimingProblems(config.raft, node.locks.rules);
    if (problems.length > 0) {
      logger.warn(
        { problems },
        `the lock rules in force do not suit this node's Raft timing: ${problems.join('; ')}`,
      );
    }
  });
  const spans =
    config.tracing.otlpEndpoint === null
      ? null
      : await startSpanExport(config.tracing.otlpEndpoint, id);
  if (spans !== null) {
    node.observe({
      proposed: (seconds, outcome, trace) => {
        if (trace !== undefined) spans.writeEnded(trace, seconds, outcome);
      },
      forwardedWrite: (trace, from, outcome) => spans.forwardTaken(trace, from, outcome),
    });
  }
  node.start();
  const auth = authenticator(config, security, logger);
  const api = await startApiServer({
    node,
    address: self.clientListenAddress,
    logger: apiLogger(logger),
    members: config.nodes,
    raft: config.raft,
    ...optional('credentials', security.apiCredentials()),
    requestBytesMax: config.runtime.clientRequestBytesMax,
    onAuthFailure: security.authFailures.listener('client'),
    ...optional('auth', auth),
    observer: {
      acquireEnded: (seconds, outcome) => metrics.acquireSeconds.observe({ outcome }, seconds),
      refused: (method) => metrics.backpressureRefusals.inc({ method }),
      ...(spans === null ? {} : { callEnded: spans.callEnded }),
    },
    options: {
      clientCallsInFlightMax: config.runtime.clientCallsInFlightMax,
      watchEventsBufferedMax: config.runtime.watchEventsBufferedMax,
      listItemsMax: config.runtime.listItemsMax,
      watchCutoffGraceMs: config.runtime.watchCutoffGraceMs,
      observeConfirmIntervalMs: config.runtime.observeConfirmIntervalMs,
      sessionStreamCallsInFlightMax: config.runtime.sessionStreamCallsInFlightMax,
      sessionStreamWaitsInFlightMax: config.runtime.sessionStreamWaitsInFlightMax,
      backpressureRetryAfterMs: config.runtime.backpressureRetryAfterMs,
    },
  });
  const metricsServer = await startMetricsServer(self.metricsAddress, metrics, consoleServer, {
    mode: config.tls?.metrics ?? 'plaintext',
    store: security.store,
    onAuthFailure: security.authFailures.listener('metrics'),
  });
  // SIGHUP re-reads the certificates, then the access policy.
  const reloads = new ReloadHooks();
  reloads.add('tls certificates', () => security.reload());
  reloads.add('access policy', () => reloadPolicy(args.configPath, auth));
  const stopReloading = reloads.listen(logger);
  const statusTimer = logRoleChanges(node, logger);
  logger.info(
    {
      peerAddress: self.peerAddress,
      clientAddress: self.clientAddress,
      peerListenAddress: self.peerListenAddress,
      clientListenAddress: self.clientListenAddress,
      metricsAddress: self.metricsAddress,
      tls: security.tls,
      peerTransport: config.peerTransport,
      clusterId: identity.clusterId || '(not known yet)',
      dataDir: directory,
    },
    'node started',
  );
  const stoppedBy = await Promise.race([untilSignal(), failure]);
  if (stoppedBy instanceof Error) {
    logger.fatal({ err: stoppedBy }, 'node stopped on a failure; exiting');
  } else {
    logger.info('shutting down: handing over leadership, then draining');
  }
  clearInterval(statusTimer);
  stopReloading();
  heapGrowth.stop();
  runtime.stop();
  // Health turns NOT_SERVING first, so load balancers move away before the node does.
  api.readiness.close();
  await node.stop();
  await api.close(stoppedBy instanceof Error ? 0 : config.runtime.shutdownDrainMs);
  consoleServer.close();
  await new Promise<void>((resolve) => metricsServer.close(() => resolve()));
  await spans?.shutdown();
  if (stoppedBy instanceof Error) {
    const where =
      stoppedBy instanceof IdentityMismatchError ? ` (data directory ${directory})` : '';
    throw new Error(`node ${id} stopped: ${stoppedBy.message}${where}`);
  }
  logger.info('stopped');
}

/**
 * The stored identity, checked against this node and the config before anything else
 * runs; a database of another node or cluster stops start-up (the storage is closed, the
 * process exits non-zero with the error). An older database adopts its identity here.
 */
async function checkedIdentity(
  storage: LevelStorage,
  id: NodeId,
  clusterId: string | null,
  directory: string,
  logger: Logger,
): Promise<StoredIdentity> {
  try {
    const started = checkIdentityAtStart(storage.identity, { nodeId: id, clusterId }, directory);
    if (started.save) {
      await storage.saveIdentity(started.identity);
      logger.warn(
        { clusterId: started.identity.clusterId || '(not known yet)' },
        started.note ?? '',
      );
    }
    return started.identity;
  } catch (error) {
    await storage.close();
    if (error instanceof IdentityMismatchError) {
      throw new Error(`node ${id} refused to start: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/**
 * The node, or its start-up error with the peer transport and storage closed, so that the
 * process exits: a snapshot this binary cannot restore (one of a lock behaviour version it
 * does not know, BehaviourUnsupportedError) must not leave a process up with its peer port
 * open and no node behind it.
 */
async function createNode(
  create: () => DlmNode,
  opened: { readonly traffic: PeerTraffic; readonly storage: LevelStorage },
): Promise<DlmNode> {
  try {
    return create();
  } catch (error) {
    await opened.traffic.close();
    await opened.storage.close();
    throw error;
  }
}

const FOREIGN_LOG_INTERVAL_MS = 10_000;

function runtimeOptions(config: ClusterFileConfig): NodeRuntimeOptions {
  const { tickIntervalMs, ...raft } = config.raft;
  return {
    tickIntervalMs,
    raft,
    lock: config.lock,
    pendingProposalsMax: config.runtime.pendingProposalsMax,
    proposalTimeoutMs: config.runtime.proposalTimeoutMs,
    snapshotEntriesThreshold: config.runtime.snapshotEntriesThreshold,
    snapshotEntriesMax: config.runtime.snapshotEntriesMax,
    compactionRetainEntries: config.runtime.compactionRetainEntries,
    compactionSliceEntries: config.runtime.compactionSliceEntries,
    compactionHoldEntriesMax: config.runtime.compactionHoldEntriesMax,
    restoreCollectBytesMin: config.runtime.restoreCollectBytesMin,
    shutdownTransferMs: config.runtime.leadershipTransferTimeoutMs,
  };
}

/** The log's lock rules against this node's config, whenever they change. */
function logLockRules(logger: Logger, report: LockRulesReport): void {
  switch (report.kind) {
    case 'unset':
      logger.info(
        'no lock rules in the log yet: this config lock section applies here, and the leader takes no write, until a leader proposes its config lock section',
      );
      return;
    case 'agree':
      logger.info({ rulesIndex: report.setIndex }, 'the lock rules in force match this config');
      return;
    case 'differ':
      logger.warn(
        {
          rulesIndex: report.setIndex,
          differences: report.differences.map(({ field, ours, theirs }) => ({
            field: `lock.${field}`,
            file: ours,
            log: theirs,
          })),
        },
        `this node's config disagrees with the lock rules in force (set through the log at index ${report.setIndex}); following the log: ${describeDifferences(report.differences)}. To change the cluster's rules: dlm rules apply --config FILE`,
      );
      return;
  }
}

/** The API logs through pino, at the level it asks for. */
function apiLogger(logger: Logger): ApiLogger {
  return (level, message, fields = {}) => logger[level](fields, message);
}

/** Logs every change of role, term or leader, with the fields the design asks for. */
function logRoleChanges(node: DlmNode, logger: Logger): NodeJS.Timeout {
  let last = '';
  return setInterval(() => {
    const { role, term, leaderId, commitIndex } = node.status();
    const key = `${role}/${term}/${leaderId}`;
    if (key === last) return;
    last = key;
    logger.info({ role, term, leaderId, commitIndex }, 'raft state changed');
  }, 100);
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/**
 * One line per snapshot, per long GC pause and per event-loop stall, each with the time
 * it began (epoch ms, like pino's \`time\`): a client that saw a slow call can find what
 * held the node then (\`npm run bench -- --slowest N --keep-data\` prints the times).
 */
function logStalls(node: DlmNode, runtime: RuntimeWatch, logger: Logger): void {
  const stallMsMin = runtime.options.stallMsMin;
  node.observe({
    snapshotted: (report) =>
      logger.info(report, 'snapshot stored (the log is compacted behind it in slices)'),
  });
  runtime.listen({
    gcPause: (kind, durationMs, startedAtMs) => {
      if (durationMs >= stallMsMin) logger.warn({ kind, durationMs, startedAtMs }, 'long GC pause');
    },
    loopStalled: (durationMs, startedAtMs) =>
      logger.warn({ durationMs, startedAtMs }, 'event loop stalled'),
  });
}

/** `{ [key]: value }`, or nothing when value is undefined (exactOptionalPropertyTypes). */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return value === undefined ? {} : ({ [key]: value } as { [P in K]?: V });
}

/**
 * An auth section protects nothing from whoever reaches a plaintext peer port: the
 * cluster id travels in clear in every peer message, and with it anyone may forward a
 * write naming itself a member and carrying any identity, or speak Raft as one. Not
 * refused (a private network between the nodes is a setup we support, and a node that
 * stopped starting after an upgrade would be worse), but said loudly at every start.
 */
function warnIfPeersPlaintext(
  config: ClusterFileConfig,
  peerListenAddress: string,
  logger: Logger,
): void {
  if (config.auth === null || config.tls !== null) return;
  logger.warn(
    { peerListenAddress, risk: 'peers-plaintext-under-auth' },
    `the auth section is enforced on the client port only: the peer port ${peerListenAddress} is plaintext (no tls section), so anyone who can reach it and reads the cluster id off the network can write as any identity and bypass every permission; bearer tokens also cross the network in clear. Fix: add a tls section (dlm certs init makes the certificates), so that peers must present node certificates; until then keep the peer port on a network only the nodes reach`,
  );
}

/**
 * Identities only when the config has an auth section. Without one (even under mutual
 * TLS) calls carry no identity and sessions no owner, exactly as before issue 15: a node
 * of an older version writes and checks none, so a mutual-TLS cluster that is upgraded
 * one node at a time must not start owning sessions halfway (replicas would diverge).
 * Refused authentications are counted and logged with the transport's (see NodeSecurity).
 */
function authenticator(
  config: ClusterFileConfig,
  security: NodeSecurity,
  logger: Logger,
): Authenticator | undefined {
  if (config.auth === null) return undefined;
  const auth = new Authenticator(config.auth, security.authFailures.listener('client'));
  const policy = auth.policy;
  assert(policy !== null, 'an auth section makes a policy');
  logger.info({ policyDigest: policy.digest, roles: policy.roleCount }, 'access policy in force');
  return auth;
}

/**
 * SIGHUP's policy reload. The whole file is read and checked as at start, so a file that
 * could not start a node is refused with each wrong field named, and the policy in
 * force stays; then only its `auth` section is put in force (every other section is
 * read at start only). Adding or removing the section needs a restart: it decides more
 * than the policy (whether commands carry identities, what the console shows).
 */
async function reloadPolicy(
  configPath: string,
  auth: Authenticator | undefined,
): Promise<{ policyDigest: string; previousPolicyDigest: string; roles: number } | 'open'> {
  const section = (await loadClusterConfig(configPath)).auth;
  if (auth === undefined) {
    if (section === null) return 'open';
    throw new ConfigError(
      ['auth: this node started without an auth section; adding one needs a restart'],
      resolve(configPath),
    );
  }
  if (section === null) {
    throw new ConfigError(
      ['auth: this node started with an auth section; removing it needs a restart'],
      resolve(configPath),
    );
  }
  const previousPolicyDigest = auth.policy?.digest ?? '';
  const policy = auth.replace(section);
  return { policyDigest: policy.digest, previousPolicyDigest, roles: policy.roleCount };
}
