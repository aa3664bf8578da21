import { parseAddress } from '../config/address.ts';
import { Problems } from '../config/fields.ts';
import { NODE_ID_PATTERN } from '../config/nodes.ts';
import { readLockSection } from '../config/sections.ts';
import { checkTiming } from '../config/timing.ts';
import type { RaftConfig } from '../config/types.ts';
import {
  KIND_LIMIT_CEILINGS,
  LOCK_LIMIT_CEILINGS,
  LOCK_LIMIT_NAMES,
  type LockClaim,
  type LockCommand,
  type LockLimits,
  type LockMode,
  MULTI_LOCK_LIMIT_CEILINGS,
} from '../lock/index.ts';
import { OPTIONAL_LOCK_RULE_NAMES } from '../lock/optional-rules.ts';
import {
  type FencingToken,
  fencingToken,
  type NodeId,
  type SessionId,
  nodeId as toNodeId,
  sessionId as toSessionId,
} from '../util/ids.ts';
import { utf8ByteLength } from '../util/utf8.ts';
import { invalidArgument } from './errors.ts';
import { describeValue, UndecodableRequest, uint64Text, uint64ToNumber } from './proto.ts';
import { wireRuleName } from './rules.ts';

/**
 * Checks every field of every request before anything is proposed: its type, and the
 * ceilings no lock rules exceed (LOCK_LIMIT_CEILINGS), so a malformed request costs no
 * log entry and its error names the field in the client's terms (`AcquireRequest.lock`).
 * The rules in force are not checked here but in the state machine, when the entry
 * applies, after it looked for the request's remembered result: a retry of a request
 * that applied must get its first outcome though the rules were lowered since, and a
 * node that has not yet applied the latest rules must not judge by older ones. Its
 * refusals name the field the same way (see rejectionError).
 */

type Command<T extends LockCommand['type']> = Extract<LockCommand, { type: T }>;

const CEILINGS = LOCK_LIMIT_CEILINGS;

export function parseOpenSession(raw: unknown): Command<'OpenSession'> {
  const m = message('OpenSessionRequest', raw);
  return {
    type: 'OpenSession',
    ttlMs: m.count('ttl_ms', 1, CEILINGS.sessionTtlMsMax),
    clientName: m.text('client_name', CEILINGS.clientNameBytesMax, true),
    requestId: m.requestId('request_id'),
  };
}

/**
 * The sessions a KeepAlive refreshes: the one of `session_id`, or the batch of
 * `session_ids` (exactly one of the two is set). `batch` says which form was used, for
 * the answer differs: the single form is NOT_FOUND for an expired session, the batch
 * lists its expired ones. How many a batch may hold is a rule (keepAliveBatchMax),
 * checked where the entry applies (see the note at the top); its ceiling is checked
 * here, so no batch becomes an entry too large for the followers to receive.
 */
export interface KeepAliveQuery {
  readonly sessionIds: readonly SessionId[];
  readonly batch: boolean;
}

export function parseKeepAlive(raw: unknown): KeepAliveQuery {
  const m = message('KeepAliveRequest', raw);
  const batch = m.sessions('session_ids', CEILINGS.keepAliveBatchMax);
  const single = m.number('session_id');
  if (batch.length > 0 && single !== 0) {
    throw invalidArgument(
      'KeepAliveRequest: set session_id or session_ids, not both (session_id is the one-session form)',
    );
  }
  if (batch.length === 0) return { sessionIds: [m.session('session_id')], batch: false };
  return { sessionIds: batch, batch: true };
}

export function parseCloseSession(raw: unknown): Command<'CloseSession'> {
  const m = message('CloseSessionRequest', raw);
  return {
    type: 'CloseSession',
    sessionId: m.session('session_id'),
    requestId: m.requestId('request_id'),
  };
}

export function parseAcquire(raw: unknown): Command<'Acquire'> {
  const m = message('AcquireRequest', raw);
  return {
    type: 'Acquire',
    lock: m.lockName('lock'),
    sessionId: m.session('session_id'),
    mode: m.mode('mode'),
    waitMs: m.count('wait_ms', 0, CEILINGS.waitMsMax),
    requestId: m.requestId('request_id'),
    owner: m.text('owner', CEILINGS.ownerBytesMax, true),
    maxHoldMs: m.count('max_hold_ms', 0, CEILINGS.maxHoldMsMax),
    lockDelayMs: m.count('lock_delay_ms', 0, CEILINGS.lockDelayMsMax),
  };
}

/**
 * An AcquireAll: its fields as Acquire's, and the set of `locks`. How many a set may
 * name is a rule (locksPerAcquireMax), checked where the entry applies; its ceiling is
 * checked here, so no set becomes an entry too large to replicate. A lock named twice
 * is the client's bug, refused here naming both places.
 */
export function parseAcquireAll(raw: unknown): Command<'AcquireAll'> {
  const m = message('AcquireAllRequest', raw);
  return {
    type: 'AcquireAll',
    locks: m.claims('locks', MULTI_LOCK_LIMIT_CEILINGS.locksPerAcquireMax),
    ...waitingRequestFields(m),
  };
}

/**
 * The ceilings of the semaphore and election fields (issue 17) as the API checks them,
 * before the rules in force (semaphoreLimitMax, electionValueBytesMax) are checked where
 * the entry applies: no rules exceed them, so what passes here is an entry the
 * followers can take.
 */
const ELECTION_VALUE_BYTES_CEILING = KIND_LIMIT_CEILINGS.electionValueBytesMax;
const SEMAPHORE_LIMIT_CEILING = KIND_LIMIT_CEILINGS.semaphoreLimitMax;

/**
 * An AcquirePermits: the fields of an Acquire (the semaphore is `name` on the wire,
 * `lock` in the command), `permits` of at most `limit`. That `limit` is the one the
 * semaphore has, and within the rules' semaphoreLimitMax, is the state machine's to
 * judge (kindMismatch, and the rules in force where the entry applies).
 */
export function parseAcquirePermits(raw: unknown): Command<'AcquirePermits'> {
  const m = message('AcquirePermitsRequest', raw);
  const limit = m.count('limit', 1, SEMAPHORE_LIMIT_CEILING);
  const permits = m.count('permits', 1, SEMAPHORE_LIMIT_CEILING);
  if (permits > limit) {
    throw invalidArgument(
      `AcquirePermitsRequest.permits: ${permits} is more than the semaphore's limit (${limit}), so it could never be granted`,
    );
  }
  return {
    type: 'AcquirePermits',
    lock: m.lockName('name'),
    permits,
    limit,
    ...waitingRequestFields(m),
  };
}

/** A Campaign: an Acquire of the election (`election` on the wire) that carries `value`. */
export function parseCampaign(raw: unknown): Command<'Campaign'> {
  const m = message('CampaignRequest', raw);
  return {
    type: 'Campaign',
    lock: m.lockName('election'),
    value: m.text('value', ELECTION_VALUE_BYTES_CEILING, true),
    ...waitingRequestFields(m),
  };
}

export function parseProclaim(raw: unknown): Command<'Proclaim'> {
  const m = message('ProclaimRequest', raw);
  return {
    type: 'Proclaim',
    lock: m.lockName('election'),
    sessionId: m.session('session_id'),
    token: m.token('fencing_token'),
    value: m.text('value', ELECTION_VALUE_BYTES_CEILING, true),
    requestId: m.requestId('request_id'),
  };
}

/** A Resign is the Release of the leader's grant: the election is the lock. */
export function parseResign(raw: unknown): Command<'Release'> {
  const m = message('ResignRequest', raw);
  return {
    type: 'Release',
    lock: m.lockName('election'),
    sessionId: m.session('session_id'),
    token: m.token('fencing_token'),
    requestId: m.requestId('request_id'),
  };
}

export interface LeaderQuery {
  readonly election: string;
  readonly stale: boolean;
}

export function parseLeader(raw: unknown): LeaderQuery {
  const m = message('LeaderRequest', raw);
  return { election: m.lockName('election'), stale: m.flag('stale') };
}

/** The election an Observe follows; unlike a Watch's prefix it names one, so not empty. */
export function parseObserve(raw: unknown): string {
  return message('ObserveRequest', raw).lockName('election');
}

export function parseRelease(raw: unknown): Command<'Release'> {
  const m = message('ReleaseRequest', raw);
  return {
    type: 'Release',
    lock: m.lockName('lock'),
    sessionId: m.session('session_id'),
    token: m.token('fencing_token'),
    requestId: m.requestId('request_id'),
  };
}

export interface ValidateFenceQuery {
  readonly lock: string;
  readonly token: FencingToken;
}

export function parseValidateFence(raw: unknown): ValidateFenceQuery {
  const m = message('ValidateFenceRequest', raw);
  return { lock: m.lockName('lock'), token: m.token('fencing_token') };
}

export interface DescribeQuery {
  readonly lock: string;
  readonly stale: boolean;
}

export function parseDescribe(raw: unknown): DescribeQuery {
  const m = message('DescribeRequest', raw);
  return { lock: m.lockName('lock'), stale: m.flag('stale') };
}

/** The prefix of a Watch; empty watches every lock. */
export function parseWatch(raw: unknown): string {
  return message('WatchRequest', raw).text('prefix', CEILINGS.lockNameBytesMax, true);
}

/** Locks or sessions per page when a List request gives no limit. */
export const LIST_LIMIT_DEFAULT = 100;
/** The longest reason a RevokeLock may give for the node's log. */
export const REVOKE_REASON_BYTES_MAX = 256;

export interface ListLocksQuery {
  readonly prefix: string;
  readonly limit: number;
  readonly after: string;
  readonly stale: boolean;
}

/** `listItemsMax`: the node's runtime.listItemsMax, the largest limit a page may ask for. */
export function parseListLocks(raw: unknown, listItemsMax: number): ListLocksQuery {
  const m = message('ListLocksRequest', raw);
  return {
    prefix: m.text('prefix', CEILINGS.lockNameBytesMax, true),
    limit: m.limit('limit', listItemsMax),
    after: m.text('after', CEILINGS.lockNameBytesMax, true),
    stale: m.flag('stale'),
  };
}

export interface ListSessionsQuery {
  readonly limit: number;
  readonly afterSessionId: number;
  readonly stale: boolean;
}

export function parseListSessions(raw: unknown, listItemsMax: number): ListSessionsQuery {
  const m = message('ListSessionsRequest', raw);
  return {
    limit: m.limit('limit', listItemsMax),
    afterSessionId: m.number('after_session_id'),
    stale: m.flag('stale'),
  };
}

export function parseRevokeLock(raw: unknown): Command<'Revoke'> {
  const m = message('RevokeLockRequest', raw);
  return {
    type: 'Revoke',
    lock: m.lockName('lock'),
    reason: m.text('reason', REVOKE_REASON_BYTES_MAX, true),
  };
}

export function parseStatus(raw: unknown): void {
  message('StatusRequest', raw);
}

export interface AddMemberQuery {
  readonly id: NodeId;
  readonly peerAddress: string;
  readonly clientAddress: string;
}

export function parseAddMember(raw: unknown): AddMemberQuery {
  const m = message('AddMemberRequest', raw);
  return {
    id: m.nodeId('node_id'),
    peerAddress: m.address('peer_address'),
    clientAddress: m.address('client_address'),
  };
}

export function parseRemoveMember(raw: unknown): NodeId {
  return message('RemoveMemberRequest', raw).nodeId('node_id');
}

/** The voter to hand leadership to, or null (an empty id) for the most caught-up one. */
export function parseTransferLeadership(raw: unknown): NodeId | null {
  const m = message('TransferLeadershipRequest', raw);
  return m.text('target_node_id', NODE_ID_CHARS_MAX, true) === ''
    ? null
    : m.nodeId('target_node_id');
}

/**
 * The rules of a SetLockRulesRequest, checked as a config file's `lock` section is
 * (each field's range, the orderings), and against `raft`, the proposing node's Raft
 * timing, as the config's sections are checked together (TTLs that cannot survive a
 * keepalive round or a failover). Without `raft` the timing is not checked.
 */
export function parseSetLockRules(raw: unknown, raft: RaftConfig | null): LockLimits {
  const wire = message('SetLockRulesRequest', raw).nested('rules');
  const section: Record<string, number> = {};
  for (const field of LOCK_LIMIT_NAMES) section[field] = wire.number(wireRuleName(field));
  // 0 leaves an optional rule unset, its default in force.
  for (const field of OPTIONAL_LOCK_RULE_NAMES) {
    const value = wire.number(wireRuleName(field));
    if (value !== 0) section[field] = value;
  }
  const problems = new Problems();
  const rules = readLockSection(problems, section);
  if (problems.list.length === 0 && raft !== null) checkTiming(problems, raft, rules);
  if (problems.list.length > 0) {
    throw invalidArgument(
      `SetLockRulesRequest.rules, read as a config's lock section: ${problems.list.join('; ')}`,
    );
  }
  return rules;
}

/** Ids are at most 63 characters (NODE_ID_PATTERN); this only bounds what is echoed back. */
const NODE_ID_CHARS_MAX = 256;
const ADDRESS_CHARS_MAX = 300;

/** Health service names are short; the bound only keeps a hostile one from being echoed in full. */
const HEALTH_SERVICE_NAME_BYTES_MAX = 256;

export function parseHealthCheck(raw: unknown): string {
  return message('HealthCheckRequest', raw).text('service', HEALTH_SERVICE_NAME_BYTES_MAX, true);
}

// ------------------------------------------------------------------ field readers

/**
 * The fields every waiting request but Acquire shares (Acquire has its mode between
 * them), in the order the command has always been encoded in.
 */
function waitingRequestFields(m: FieldReader) {
  return {
    sessionId: m.session('session_id'),
    waitMs: m.count('wait_ms', 0, CEILINGS.waitMsMax),
    requestId: m.requestId('request_id'),
    owner: m.text('owner', CEILINGS.ownerBytesMax, true),
    maxHoldMs: m.count('max_hold_ms', 0, CEILINGS.maxHoldMsMax),
    lockDelayMs: m.count('lock_delay_ms', 0, CEILINGS.lockDelayMsMax),
  };
}

function message(name: string, raw: unknown): FieldReader {
  if (raw instanceof UndecodableRequest) {
    throw invalidArgument(raw.detail);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalidArgument(`${name}: must be a message, got ${describeValue(raw)}`);
  }
  return new FieldReader(name, raw as Record<string, unknown>);
}

const MODES: Readonly<Record<string, LockMode>> = { EXCLUSIVE: 'exclusive', SHARED: 'shared' };

class FieldReader {
  constructor(
    private readonly messageName: string,
    private readonly fields: Record<string, unknown>,
  ) {}

  private path(field: string): string {
    return `${this.messageName}.${field}`;
  }

  private value(field: string): unknown {
    return Object.hasOwn(this.fields, field) ? this.fields[field] : undefined;
  }

  text(field: string, bytesMax: number, emptyAllowed: boolean): string {
    const value = this.value(field) ?? '';
    if (typeof value !== 'string') {
      throw invalidArgument(`${this.path(field)}: must be a string, got ${describeValue(value)}`);
    }
    if (!emptyAllowed && value.length === 0) {
      throw invalidArgument(`${this.path(field)}: must not be empty`);
    }
    const bytes = utf8ByteLength(value);
    if (bytes > bytesMax) {
      throw invalidArgument(`${this.path(field)}: is ${bytes} bytes, the limit is ${bytesMax}`);
    }
    return value;
  }

  /** A member id, as the config file spells them. */
  nodeId(field: string): NodeId {
    const text = this.text(field, NODE_ID_CHARS_MAX, false);
    if (!NODE_ID_PATTERN.test(text)) {
      throw invalidArgument(
        `${this.path(field)}: must match ${NODE_ID_PATTERN}, got ${describeValue(text)}`,
      );
    }
    return toNodeId(text);
  }

  /** A "host:port" others connect to. */
  address(field: string): string {
    const text = this.text(field, ADDRESS_CHARS_MAX, false);
    const parsed = parseAddress(text);
    if (!parsed.ok) throw invalidArgument(`${this.path(field)}: ${parsed.problem}`);
    return text;
  }

  /** A message field, which proto3 leaves null when it was not sent. */
  nested(field: string): FieldReader {
    const value = this.value(field);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw invalidArgument(`${this.path(field)}: must be given`);
    }
    return new FieldReader(this.path(field), value as Record<string, unknown>);
  }

  /** A uint64 that fits a number, with no range of its own. */
  number(field: string): number {
    return uint64ToNumber(this.path(field), this.value(field) ?? '0');
  }

  /** Any name up to the ceiling: a lock may keep a name longer than lowered rules allow. */
  lockName(field: string): string {
    return this.text(field, CEILINGS.lockNameBytesMax, false);
  }

  /** A uint64 quantity within [min, max]. */
  count(field: string, min: number, max: number): number {
    const value = uint64ToNumber(this.path(field), this.value(field) ?? '0');
    if (value < min || value > max) {
      throw invalidArgument(`${this.path(field)}: must be within [${min}, ${max}], got ${value}`);
    }
    return value;
  }

  /** A page size: 0 means LIST_LIMIT_DEFAULT; more than `max` is refused naming the setting. */
  limit(field: string, max: number): number {
    const value = uint64ToNumber(this.path(field), this.value(field) ?? 0);
    if (value > max) {
      throw invalidArgument(
        `${this.path(field)}: ${value} is over runtime.listItemsMax (${max}) of this node: ask for at most ${max} and page with the last item`,
      );
    }
    return value === 0 ? Math.min(LIST_LIMIT_DEFAULT, max) : value;
  }

  session(field: string): SessionId {
    return toSessionId(this.positive(field));
  }

  /**
   * A repeated session id: at most `countMax` (checked before any is read), each valid,
   * none twice (a client's bug a retry would repeat).
   */
  sessions(field: string, countMax: number): SessionId[] {
    const value = this.value(field) ?? [];
    if (!Array.isArray(value)) {
      throw invalidArgument(`${this.path(field)}: must be a list, got ${describeValue(value)}`);
    }
    if (value.length > countMax) {
      throw invalidArgument(
        `${this.path(field)}: holds ${value.length} ids, the ceiling is ${countMax}`,
      );
    }
    const ids: SessionId[] = [];
    const seen = new Set<number>();
    for (const [position, item] of value.entries()) {
      const where = `${this.path(field)}[${position}]`;
      const id = uint64ToNumber(where, item);
      if (id === 0) throw invalidArgument(`${where}: must not be 0`);
      if (seen.has(id)) throw invalidArgument(`${where}: session ${id} is listed twice`);
      seen.add(id);
      ids.push(toSessionId(id));
    }
    return ids;
  }

  /** A repeated LockClaim: 1 to `countMax` of them, each a valid name and mode, no name twice. */
  claims(field: string, countMax: number): LockClaim[] {
    const value = this.value(field) ?? [];
    if (!Array.isArray(value)) {
      throw invalidArgument(`${this.path(field)}: must be a list, got ${describeValue(value)}`);
    }
    if (value.length === 0 || value.length > countMax) {
      throw invalidArgument(
        `${this.path(field)}: must name 1 to ${countMax} locks, got ${value.length}`,
      );
    }
    const firstAt = new Map<string, number>();
    return value.map((item: unknown, position) => {
      const where = `${field}[${position}]`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw invalidArgument(
          `${this.path(where)}: must be a LockClaim, got ${describeValue(item)}`,
        );
      }
      const claim = new FieldReader(this.path(where), item as Record<string, unknown>);
      const lock = claim.lockName('lock');
      const mode = claim.mode('mode');
      const earlier = firstAt.get(lock);
      if (earlier !== undefined) {
        throw invalidArgument(
          `${this.path(where)}.lock: names ${describeValue(lock)} again (also ${field}[${earlier}]): a set names each lock once`,
        );
      }
      firstAt.set(lock, position);
      return { lock, mode };
    });
  }

  token(field: string): FencingToken {
    return fencingToken(this.positive(field));
  }

  /** Ids and tokens are log indexes, and no entry has index 0. */
  private positive(field: string): number {
    const value = uint64ToNumber(this.path(field), this.value(field) ?? '0');
    if (value === 0) throw invalidArgument(`${this.path(field)}: must not be 0`);
    return value;
  }

  /** Kept as text: the state machine dedupes by it and never does arithmetic on it. */
  requestId(field: string): string {
    const text = uint64Text(this.path(field), this.value(field) ?? '0');
    if (text === '0') throw invalidArgument(`${this.path(field)}: must not be empty (0)`);
    if (utf8ByteLength(text) > CEILINGS.requestIdBytesMax) {
      throw invalidArgument(
        `${this.path(field)}: is longer than the ceiling of requestIdBytesMax (${CEILINGS.requestIdBytesMax})`,
      );
    }
    return text;
  }

  mode(field: string): LockMode {
    const value = this.value(field) ?? 'EXCLUSIVE';
    const mode =
      typeof value === 'string' && Object.hasOwn(MODES, value) ? MODES[value] : undefined;
    if (mode === undefined) {
      throw invalidArgument(`${this.path(field)}: unknown value ${describeValue(value)}`);
    }
    return mode;
  }

  flag(field: string): boolean {
    const value = this.value(field) ?? false;
    if (typeof value !== 'boolean') {
      throw invalidArgument(`${this.path(field)}: must be a bool, got ${describeValue(value)}`);
    }
    return value;
  }
}
