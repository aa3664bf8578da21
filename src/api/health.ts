import { Metadata, type ServerWritableStream, type ServiceError, status } from '@grpc/grpc-js';
import { type ApiContext, type ApiNode, serviceErrorOf } from './context.ts';
import {
  CLUSTER_SERVICE_NAME,
  type HealthCheckResponse,
  type HealthServiceHandlers,
  LOCK_SERVICE_NAME,
  type ServingStatus,
} from './proto.ts';
import { parseHealthCheck } from './validate.ts';

/** "" is the whole server, as the health protocol defines. */
const KNOWN_SERVICES = new Set(['', LOCK_SERVICE_NAME, CLUSTER_SERVICE_NAME]);

/**
 * Whether this node is ready for clients: it knows a leader and has applied everything
 * that was committed when it could first have known (the commit index at start-up, or
 * when it first heard from a leader, whichever is later). Until then a client routed
 * here would see a node far behind; after it, the node serves while it knows a leader.
 */
export class Readiness {
  private readonly startupCommitIndex: number;
  private catchUpIndex: number | null = null;
  private caughtUp = false;
  private closed = false;

  constructor(private readonly node: Pick<ApiNode, 'status'>) {
    this.startupCommitIndex = node.status().commitIndex;
  }

  serving(): boolean {
    if (this.closed) return false;
    const view = this.node.status();
    if (view.leaderId === null) return false;
    this.catchUpIndex ??= Math.max(this.startupCommitIndex, view.commitIndex);
    if (!this.caughtUp) this.caughtUp = view.appliedIndex >= this.catchUpIndex;
    return this.caughtUp;
  }

  /** A node that is shutting down stops taking new clients first. */
  close(): void {
    this.closed = true;
  }
}

/** grpc.health.v1.Health: Check once, or Watch every change. */
export function healthService(context: ApiContext, readiness: Readiness): HealthServiceHandlers {
  const statusOf = (service: string): ServingStatus | null => {
    if (!KNOWN_SERVICES.has(service)) return null;
    return readiness.serving() ? 'SERVING' : 'NOT_SERVING';
  };
  return {
    // Check bypasses the call gate: it costs nothing, and a probe that fails because the
    // node is busy would take a working node out of rotation.
    Check: (call, callback) => {
      try {
        const service = parseHealthCheck(call.request);
        const current = statusOf(service);
        if (current === null) callback(unknownService(service));
        else callback(null, { status: current });
      } catch (error) {
        callback(serviceErrorOf(context, 'Health.Check', error));
      }
    },
    Watch: (call) => watchHealth(context, call, statusOf),
  };
}

function watchHealth(
  context: ApiContext,
  call: ServerWritableStream<unknown, HealthCheckResponse>,
  statusOf: (service: string) => ServingStatus | null,
): void {
  let service: string;
  let leave: () => void;
  try {
    service = parseHealthCheck(call.request);
    leave = context.gate.enter();
  } catch (error) {
    call.emit('error', serviceErrorOf(context, 'Health.Watch', error));
    return;
  }
  let last: ServingStatus | null = null;
  const report = (): void => {
    const current = statusOf(service) ?? 'SERVICE_UNKNOWN';
    // Only changes are sent, so a client that stops reading gets at most one per change.
    if (current !== last && call.writableLength === 0) {
      last = current;
      call.write({ status: current });
    }
  };
  // The node emits no event when it learns of a leader, so the status is polled.
  const timer = setInterval(report, context.options.healthPollIntervalMs);
  const stop = (): void => {
    clearInterval(timer);
    leave();
  };
  call.once('cancelled', stop);
  call.once('close', stop);
  report();
}

/** The health protocol's own answer for a name it does not serve. */
function unknownService(service: string): ServiceError {
  const details = `unknown service ${JSON.stringify(service)}`;
  return Object.assign(new Error(details), {
    code: status.NOT_FOUND,
    details,
    metadata: new Metadata(),
  });
}
