import * as grpc from '@grpc/grpc-js';
import { LEADER_HINT_KEY } from '../api/errors.ts';

/**
 * A failed command's message: what went wrong (the error's own words, which name the
 * node, the call and the field) and what to do about it, by gRPC status.
 */
export function explainError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const status = statusOf(error);
  const advice = status === null ? null : ADVICE[status];
  return advice === undefined || advice === null ? message : `${message}\n  what to do: ${advice}`;
}

const ADVICE: Partial<Record<grpc.status, string>> = {
  [grpc.status.UNAVAILABLE]:
    'no node answered, or none knows a leader: check the addresses (--endpoints, or the clientAddress entries of --config) and run `dlm status`',
  [grpc.status.DEADLINE_EXCEEDED]:
    'the cluster did not answer in time: run `dlm status` to see whether it has a leader, or raise --timeout-ms',
  [grpc.status.INVALID_ARGUMENT]: 'fix the argument the message names and run the command again',
  [grpc.status.RESOURCE_EXHAUSTED]:
    'the node is overloaded or a limit is reached: retry later, or ask for a smaller --limit',
  [grpc.status.UNIMPLEMENTED]:
    'the node runs an older dlm without this call: upgrade the node, or use a command it has',
  [grpc.status.UNAUTHENTICATED]:
    'the node wants mutual TLS: give --tls-ca, --tls-cert and --tls-key (or a --config with a tls section)',
  [grpc.status.ABORTED]: 're-read the state (dlm locks, dlm describe) and start again',
};

function statusOf(error: unknown): grpc.status | null {
  const candidate = error as { status?: unknown; code?: unknown };
  if (typeof candidate.status === 'number') return candidate.status;
  if (typeof candidate.code === 'number') return candidate.code;
  return null;
}

/** A gRPC error in one line: status, details, and the leader hint when there is one. */
export function describeServiceError(error: unknown): string {
  const serviceError = error as Partial<grpc.ServiceError>;
  if (typeof serviceError.code !== 'number') {
    return error instanceof Error ? error.message : String(error);
  }
  const hint = serviceError.metadata?.get(LEADER_HINT_KEY)[0];
  const code = grpc.status[serviceError.code] ?? String(serviceError.code);
  // grpc-js appends an empty "Resolution note:" to connection failures.
  const details = (serviceError.details ?? '').replace(/\s*Resolution note:\s*$/, '');
  return `${code}: ${details}${hint === undefined ? '' : ` (leader: ${String(hint)})`}`;
}
