import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { RaftConfig } from '../config/types.ts';
import { watchTlsHandshakeFailures } from '../transport/grpc-handshakes.ts';
import type { AuthFailureListener } from '../transport/peer-identity.ts';
import { ActivityClock } from './activity.ts';
import type { Authenticator } from './auth/caller.ts';
import { clusterService, type MemberAddresses } from './cluster-service.ts';
import {
  type ApiContext,
  type ApiNode,
  type ApiObserver,
  type ApiOptions,
  CallGate,
  DEFAULT_API_OPTIONS,
} from './context.ts';
import { monotonicDeadlineInterceptor } from './deadline.ts';
import { type ApiLogger, SILENT_LOGGER } from './errors.ts';
import { EventHub } from './event-hub.ts';
import { healthService, Readiness } from './health.ts';
import { lockService } from './lock-service.ts';
import { CLUSTER_SERVICE, HEALTH_SERVICE, LOCK_SERVICE, packageDefinition } from './proto.ts';
import { SessionStreams } from './session-stream.ts';

export interface ApiServerOptions {
  readonly node: ApiNode;
  /** host:port; loopback by default, and port 0 picks a free port. */
  readonly address?: string;
  readonly logger?: ApiLogger;
  /** Addresses reported by Cluster.Status, usually the config's `nodes`. */
  readonly members?: readonly MemberAddresses[];
  readonly options?: Partial<ApiOptions>;
  readonly observer?: ApiObserver;
  /** This node's Raft timing, which SetLockRules checks proposed rules against; none: not checked. */
  readonly raft?: RaftConfig;
  /** Plaintext by default; mutual TLS when the cluster config has a tls section. */
  readonly credentials?: grpc.ServerCredentials;
  /** The largest request accepted (runtime.clientRequestBytesMax); default grpc-js's 4 MiB. */
  readonly requestBytesMax?: number;
  /** A client refused at the TLS handshake (counted and logged by the caller). */
  readonly onAuthFailure?: AuthFailureListener;
  /**
   * Who calls and what they may do (src/api/auth). Absent: every caller is anonymous
   * and may do anything, with no work per call.
   */
  readonly auth?: Authenticator;
}

export interface ApiServer {
  readonly port: number;
  readonly readiness: Readiness;
  /** Calls admitted and not yet ended (waiting Acquires and open streams included). */
  callsInFlight(): number;
  /** Stops taking calls, lets those in flight finish for `graceMs`, then cancels the rest. */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULT_API_ADDRESS = '127.0.0.1:0';
const DEFAULT_REQUEST_BYTES_MAX = 4 * 1024 * 1024;

/**
 * Serves dlm.v1.Lock, dlm.v1.Cluster, grpc.health.v1.Health and server reflection
 * (so grpcurl and generic clients need no .proto file) for one node.
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const logger = options.logger ?? SILENT_LOGGER;
  const settings: ApiOptions = { ...DEFAULT_API_OPTIONS, ...options.options };
  const events = new EventHub(options.node, logger, settings.observeConfirmIntervalMs);
  const activity = new ActivityClock(events);
  const context: ApiContext = {
    node: options.node,
    events,
    activity,
    logger,
    gate: new CallGate(settings.clientCallsInFlightMax),
    options: settings,
    ...(options.observer === undefined ? {} : { observer: options.observer }),
    ...(options.auth === undefined ? {} : { auth: options.auth }),
  };
  // The configured addresses seed the node's address book, which it shares with its peers.
  options.node.learnAddresses?.(options.members ?? []);
  const readiness = new Readiness(options.node);
  // Membership calls measure their deadline on the monotonic clock (see deadline.ts).
  const server = new grpc.Server({
    interceptors: [monotonicDeadlineInterceptor],
    'grpc.max_receive_message_length': options.requestBytesMax ?? DEFAULT_REQUEST_BYTES_MAX,
    // Answers are bounded by the lock rules, not by a fixed figure (see the client's
    // CHANNEL_OPTIONS); a limit here would make a legal Describe unreadable for ever.
    'grpc.max_send_message_length': -1,
  });
  const sessions = new SessionStreams();
  server.addService(LOCK_SERVICE, lockService(context, sessions));
  server.addService(
    CLUSTER_SERVICE,
    clusterService(context, options.members ?? [], options.raft ?? null),
  );
  server.addService(HEALTH_SERVICE, healthService(context, readiness));
  new ReflectionService(packageDefinition).addToServer(server);
  const credentials = options.credentials ?? grpc.ServerCredentials.createInsecure();
  const port = await bind(server, options.address ?? DEFAULT_API_ADDRESS, credentials).catch(
    (error: unknown) => {
      activity.close();
      context.events.close();
      throw error;
    },
  );
  if (options.onAuthFailure !== undefined) {
    watchTlsHandshakeFailures(server, options.onAuthFailure);
  }
  logger('info', 'API server listening', { nodeId: options.node.id, port });
  return {
    port,
    readiness,
    callsInFlight: () => context.gate.size,
    close: async (graceMs = 1_000) => {
      readiness.close();
      // Like the GOAWAY that turns new unary calls away, so clients move to another node.
      sessions.drain();
      await shutdown(server, graceMs);
      activity.close();
      context.events.close();
    },
  };
}

function bind(
  server: grpc.Server,
  address: string,
  credentials: grpc.ServerCredentials,
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error === null) resolve(port);
      else reject(error);
    });
  });
}

function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
