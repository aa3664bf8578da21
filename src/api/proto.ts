import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { invalidArgument } from './errors.ts';
import { installFastProtobufLong } from './protobuf-long.ts';
import { type LoaderMethod, sessionRequestDeserializer } from './session-wire.ts';
import {
  expectedFields,
  type FieldDescriptor,
  UndecodableRequest,
  wireProblem,
} from './wire-check.ts';

/**
 * The public protos, loaded at run time so the wire contract has one source: the
 * .proto files that clients in other languages generate from. Options:
 * - keepCase: field names as written (snake_case), the names of the contract;
 * - longs: String, so a uint64 beyond 2^53 arrives intact and can be refused by name
 *   instead of being rounded to another id;
 * - enums: String; an unknown enum value arrives as its number, so it can be named;
 * - defaults: every field is present, as proto3 semantics say.
 */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

// Before any message is converted: uint64 text without long.js's slow arithmetic.
installFastProtobufLong();

export const packageDefinition: PackageDefinition = loadSync(['dlm.proto', 'health.proto'], {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
});

// ------------------------------------------------------------------ wire messages

/** uint64 on the wire, as the loader gives and takes it: a decimal string. */
export type Uint64 = string;
export type WireMode = 'EXCLUSIVE' | 'SHARED';

/** A lock mode on the wire; a free lock's (null) reads as EXCLUSIVE, the proto default. */
export function wireMode(mode: 'exclusive' | 'shared' | null): WireMode {
  return mode === 'shared' ? 'SHARED' : 'EXCLUSIVE';
}

export interface ResponseHeader {
  readonly node_id: string;
  readonly leader_id: string;
  readonly term: Uint64;
  readonly index: Uint64;
}

export interface WireHolder {
  readonly session_id: Uint64;
  readonly owner: string;
  readonly fencing_token: Uint64;
  readonly acquired_index: Uint64;
  /** Set by ListLocks and Describe; '0' in an AcquireResponse. */
  readonly held_ms: Uint64;
  /** A semaphore's grant: its permits; '0' for a lock or an election. */
  readonly permits: Uint64;
  /** An election's grant: the leader's value; '' for a lock or a semaphore. */
  readonly value: string;
}

export interface WireWaiter {
  readonly session_id: Uint64;
  readonly owner: string;
  readonly mode: WireMode;
  readonly enqueued_index: Uint64;
  readonly permits: Uint64;
  readonly value: string;
}

export interface OpenSessionResponse {
  readonly header: ResponseHeader;
  readonly session_id: Uint64;
  readonly ttl_ms: Uint64;
}
export interface KeepAliveResponse {
  readonly header: ResponseHeader;
  readonly ttl_ms: Uint64;
  readonly expired_session_ids: readonly Uint64[];
}
export interface CloseSessionResponse {
  readonly header: ResponseHeader;
}
export interface AcquireResponse {
  readonly header: ResponseHeader;
  readonly acquired: boolean;
  readonly fencing_token: Uint64;
  readonly holders: readonly WireHolder[];
}
/** The holders of one lock of an AcquireAll's set. */
export interface WireLockHolders {
  readonly lock: string;
  readonly mode: WireMode;
  readonly holders: readonly WireHolder[];
}
export interface AcquireAllResponse {
  readonly header: ResponseHeader;
  readonly acquired: boolean;
  readonly fencing_token: Uint64;
  readonly locks: readonly WireLockHolders[];
}
export interface AcquirePermitsResponse {
  readonly header: ResponseHeader;
  readonly acquired: boolean;
  readonly fencing_token: Uint64;
  readonly holders: readonly WireHolder[];
}
/** An election's leader (message LeaderInfo). */
export interface WireLeader {
  readonly session_id: Uint64;
  readonly owner: string;
  readonly value: string;
  readonly fencing_token: Uint64;
  readonly campaign_index: Uint64;
  readonly held_ms: Uint64;
}
/** proto3 leaves a message field unset by omitting it; the loader then gives null. */
export interface CampaignResponse {
  readonly header: ResponseHeader;
  readonly elected: boolean;
  readonly fencing_token: Uint64;
  readonly leader: WireLeader | null;
}
export interface ProclaimResponse {
  readonly header: ResponseHeader;
  readonly leader: WireLeader;
}
export interface ResignResponse {
  readonly header: ResponseHeader;
  readonly resigned: boolean;
}
export interface LeaderResponse {
  readonly header: ResponseHeader;
  readonly has_leader: boolean;
  readonly leader: WireLeader | null;
}
export type ObserveEventType = 'CURRENT' | 'ELECTED' | 'PROCLAIMED' | 'VACANT';
export interface ObserveEvent {
  readonly header: ResponseHeader;
  readonly type: ObserveEventType;
  readonly election: string;
  readonly has_leader: boolean;
  readonly leader: WireLeader | null;
  readonly index: Uint64;
}
export interface ReleaseResponse {
  readonly header: ResponseHeader;
  readonly released: boolean;
}
export interface ValidateFenceResponse {
  readonly header: ResponseHeader;
  readonly valid: boolean;
  readonly current_token: Uint64;
}
export interface DescribeResponse {
  readonly header: ResponseHeader;
  readonly holders: readonly WireHolder[];
  readonly waiters: readonly WireWaiter[];
  readonly mode: WireMode;
}
export interface WatchEvent {
  readonly header: ResponseHeader;
  readonly type: 'GRANT' | 'RELEASE' | 'EXPIRE';
  readonly lock: string;
  readonly session_id: Uint64;
  readonly fencing_token: Uint64;
  readonly index: Uint64;
}
/** A failed call on a Session stream: what a unary call carries in its status and trailers. */
export interface SessionCallError {
  readonly code: number;
  readonly message: string;
  readonly error_code: string;
  readonly leader_hint: string;
  /** '0' unless the failure is backpressure. */
  readonly retry_after_ms: Uint64;
}
/** The answer to one call on a Session stream: exactly one result field is set. */
export interface SessionResponse {
  readonly call_id: Uint64;
  readonly trace_id: string;
  readonly open_session?: OpenSessionResponse;
  readonly keep_alive?: KeepAliveResponse;
  readonly close_session?: CloseSessionResponse;
  readonly acquire?: AcquireResponse;
  readonly release?: ReleaseResponse;
  readonly validate_fence?: ValidateFenceResponse;
  readonly describe?: DescribeResponse;
  readonly error?: SessionCallError;
}
export interface WireMember {
  readonly id: string;
  readonly peer_address: string;
  readonly client_address: string;
  readonly learner: boolean;
}
export interface StatusResponse {
  readonly header: ResponseHeader;
  readonly node_id: string;
  readonly leader_id: string;
  readonly term: Uint64;
  readonly commit_index: Uint64;
  readonly applied_index: Uint64;
  readonly members: readonly WireMember[];
  readonly lock_rules: Readonly<Record<string, Uint64>>;
  readonly lock_rules_index: Uint64;
  readonly lock_rules_digest: string;
  readonly policy_digest: string;
  readonly behaviour_version: number;
  readonly behaviour_max: number;
}
export interface SetLockRulesResponse {
  readonly header: ResponseHeader;
  readonly rules: Readonly<Record<string, Uint64>>;
  readonly rules_index: Uint64;
}
export interface AddMemberResponse {
  readonly header: ResponseHeader;
  readonly members: readonly WireMember[];
}
export interface RemoveMemberResponse {
  readonly header: ResponseHeader;
  readonly members: readonly WireMember[];
}
export interface TransferLeadershipResponse {
  readonly header: ResponseHeader;
  readonly leader_id: string;
}
export interface WireLockInfo {
  readonly lock: string;
  readonly mode: WireMode;
  readonly holders: readonly WireHolder[];
  readonly waiters: readonly WireWaiter[];
}
export interface ListLocksResponse {
  readonly header: ResponseHeader;
  readonly locks: readonly WireLockInfo[];
  readonly truncated: boolean;
  readonly last: string;
}
export interface WireSessionInfo {
  readonly session_id: Uint64;
  readonly client_name: string;
  readonly ttl_ms: Uint64;
  readonly since_refresh_ms: Uint64;
  readonly last_refresh_index: Uint64;
  readonly held_locks: readonly string[];
  readonly held_count: number;
  readonly waiting_locks: readonly string[];
  readonly waiting_count: number;
}
export interface ListSessionsResponse {
  readonly header: ResponseHeader;
  readonly sessions: readonly WireSessionInfo[];
  readonly truncated: boolean;
  readonly last_session_id: Uint64;
}
export interface RevokeLockResponse {
  readonly header: ResponseHeader;
  readonly freed: number;
}
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export interface HealthCheckResponse {
  readonly status: ServingStatus;
}

// ------------------------------------------------------------------ services

/**
 * Requests are typed `unknown` on purpose: nothing from the wire is trusted until
 * validate.ts has checked every field.
 */
export interface LockServiceHandlers extends grpc.UntypedServiceImplementation {
  OpenSession: grpc.handleUnaryCall<unknown, OpenSessionResponse>;
  KeepAlive: grpc.handleUnaryCall<unknown, KeepAliveResponse>;
  CloseSession: grpc.handleUnaryCall<unknown, CloseSessionResponse>;
  Acquire: grpc.handleUnaryCall<unknown, AcquireResponse>;
  AcquireAll: grpc.handleUnaryCall<unknown, AcquireAllResponse>;
  AcquirePermits: grpc.handleUnaryCall<unknown, AcquirePermitsResponse>;
  Campaign: grpc.handleUnaryCall<unknown, CampaignResponse>;
  Proclaim: grpc.handleUnaryCall<unknown, ProclaimResponse>;
  Resign: grpc.handleUnaryCall<unknown, ResignResponse>;
  Leader: grpc.handleUnaryCall<unknown, LeaderResponse>;
  Observe: grpc.handleServerStreamingCall<unknown, ObserveEvent>;
  Release: grpc.handleUnaryCall<unknown, ReleaseResponse>;
  ValidateFence: grpc.handleUnaryCall<unknown, ValidateFenceResponse>;
  Describe: grpc.handleUnaryCall<unknown, DescribeResponse>;
  Watch: grpc.handleServerStreamingCall<unknown, WatchEvent>;
  Session: grpc.handleBidiStreamingCall<unknown, SessionResponse>;
  ListLocks: grpc.handleUnaryCall<unknown, ListLocksResponse>;
  ListSessions: grpc.handleUnaryCall<unknown, ListSessionsResponse>;
}

export interface ClusterServiceHandlers extends grpc.UntypedServiceImplementation {
  Status: grpc.handleUnaryCall<unknown, StatusResponse>;
  AddMember: grpc.handleUnaryCall<unknown, AddMemberResponse>;
  RemoveMember: grpc.handleUnaryCall<unknown, RemoveMemberResponse>;
  TransferLeadership: grpc.handleUnaryCall<unknown, TransferLeadershipResponse>;
  SetLockRules: grpc.handleUnaryCall<unknown, SetLockRulesResponse>;
  RevokeLock: grpc.handleUnaryCall<unknown, RevokeLockResponse>;
}

export interface HealthServiceHandlers extends grpc.UntypedServiceImplementation {
  Check: grpc.handleUnaryCall<unknown, HealthCheckResponse>;
  Watch: grpc.handleServerStreamingCall<unknown, HealthCheckResponse>;
}

export const LOCK_SERVICE_NAME = 'dlm.v1.Lock';
export const CLUSTER_SERVICE_NAME = 'dlm.v1.Cluster';
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

export const LOCK_SERVICE = serverDefinition<LockServiceHandlers>(LOCK_SERVICE_NAME);
export const CLUSTER_SERVICE = serverDefinition<ClusterServiceHandlers>(CLUSTER_SERVICE_NAME);
export const HEALTH_SERVICE = serverDefinition<HealthServiceHandlers>(HEALTH_SERVICE_NAME);

/** The loader's definition, as clients (and tests) use it, unchanged. */
export function clientDefinition(name: string): grpc.ServiceDefinition {
  const definition = packageDefinition[name];
  if (definition === undefined || 'format' in definition) {
    throw new Error(`${name} is not a service in the loaded protos`);
  }
  return definition as unknown as grpc.ServiceDefinition;
}

export { UndecodableRequest } from './wire-check.ts';

function serverDefinition<Handlers extends grpc.UntypedServiceImplementation>(
  name: string,
): grpc.ServiceDefinition<Handlers> {
  const methods = Object.entries(clientDefinition(name)).map(([method, definition]) => {
    const requestDeserialize = definition.requestStream
      ? sessionRequestDeserializer(definition, messageFields)
      : strictDeserializer(definition);
    return [method, { ...definition, requestDeserialize }] as const;
  });
  return Object.fromEntries(methods) as unknown as grpc.ServiceDefinition<Handlers>;
}

/** The fields of a message of package dlm.v1, as the loader describes them. */
function messageFields(typeName: string): readonly FieldDescriptor[] | undefined {
  const type = packageDefinition[`dlm.v1.${typeName}`];
  if (type === undefined || !('format' in type)) return undefined;
  return (type.type as { field?: FieldDescriptor[] }).field;
}

/** Checks the wire format strictly (see wire-check.ts), then decodes; never throws. */
function strictDeserializer(definition: LoaderMethod): (bytes: Buffer) => unknown {
  const type = definition.requestType?.type;
  const messageName = type?.name ?? definition.path;
  const fields = expectedFields(type?.field ?? []);
  const decode = definition.requestDeserialize;
  return (bytes) => {
    try {
      const problem = wireProblem(messageName, bytes, fields);
      return problem === null ? decode(bytes) : new UndecodableRequest(problem);
    } catch (error) {
      return new UndecodableRequest(`${messageName}: could not be decoded (${String(error)})`);
    }
  };
}

// ------------------------------------------------------------------ uint64

const UINT64_PATTERN = /^(0|[1-9][0-9]{0,19})$/;

/**
 * A uint64 field as a number, for the ids, indexes and durations that the state
 * machine counts in numbers. A value past 2^53 - 1 cannot be a real id and would be
 * rounded to a different one, so it is refused naming the field.
 */
export function uint64ToNumber(field: string, value: unknown): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !UINT64_PATTERN.test(text)) {
    throw invalidArgument(`${field}: must be a uint64, got ${describeValue(value)}`);
  }
  const number = Number(text);
  if (!Number.isSafeInteger(number)) {
    throw invalidArgument(`${field}: ${text} is above 2^53 - 1, the largest value dlm supports`);
  }
  return number;
}

/** Fewer than 20 digits is always below 2^64 (20 digits): only those need a BigInt. */
function pastUint64(digits: string): boolean {
  return digits.length >= 20 && BigInt(digits) >= 2n ** 64n;
}

/** A uint64 that is kept as text (request ids): every one of the 2^64 values is valid. */
export function uint64Text(field: string, value: unknown): string {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !UINT64_PATTERN.test(text) || pastUint64(text)) {
    throw invalidArgument(`${field}: must be a uint64, got ${describeValue(value)}`);
  }
  return text;
}

export function toUint64(value: number): Uint64 {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`not a uint64: ${value}`);
  }
  return String(value);
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  if (typeof value === 'object' && value !== null)
    return Array.isArray(value) ? 'a list' : 'an object';
  return String(value);
}
