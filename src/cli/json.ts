import type {
  StatusResponse,
  WireHolder,
  WireLockInfo,
  WireMember,
  WireSessionInfo,
  WireWaiter,
} from '../api/proto.ts';

/**
 * The JSON documents of the read commands (`--json`). Field names are the proto's
 * (snake_case) and a contract like them (docs/cli.md): new fields may be added, none
 * renamed. Ids, tokens, indexes and durations are JSON numbers: dlm refuses values
 * above 2^53 - 1, so every one is exact.
 */

export interface HolderJson {
  readonly session_id: number;
  readonly owner: string;
  readonly fencing_token: number;
  readonly acquired_index: number;
  readonly held_ms: number;
  /** A semaphore's grant only: its permits. */
  readonly permits?: number;
  /** An election's leader only, when not empty: its value. */
  readonly value?: string;
}

export interface WaiterJson {
  readonly session_id: number;
  readonly owner: string;
  readonly mode: string;
  readonly enqueued_index: number;
  /** A semaphore's waiter only: the permits it asks for. */
  readonly permits?: number;
  /** An election's candidate only, when not empty: the value it would lead with. */
  readonly value?: string;
}

export interface LockJson {
  readonly lock: string;
  /** null when nobody holds the lock. */
  readonly mode: string | null;
  readonly holders: readonly HolderJson[];
  readonly waiters: readonly WaiterJson[];
}

export function holderJson(wire: WireHolder): HolderJson {
  return {
    session_id: Number(wire.session_id),
    owner: wire.owner,
    fencing_token: Number(wire.fencing_token),
    acquired_index: Number(wire.acquired_index),
    held_ms: Number(wire.held_ms ?? 0),
    ...kindFields(wire),
  };
}

/**
 * A semaphore's permits and an election's value, where the wire has them: a lock's
 * grant carries neither (permits 0, value empty), so its JSON stays as it was.
 */
function kindFields(wire: { readonly permits?: string; readonly value?: string }): {
  permits?: number;
  value?: string;
} {
  const permits = Number(wire.permits ?? 0);
  return {
    ...(permits > 0 ? { permits } : {}),
    ...(wire.value === undefined || wire.value === '' ? {} : { value: wire.value }),
  };
}

export function waiterJson(wire: WireWaiter): WaiterJson {
  return {
    session_id: Number(wire.session_id),
    owner: wire.owner,
    mode: wire.mode,
    enqueued_index: Number(wire.enqueued_index),
    ...kindFields(wire),
  };
}

export function lockJson(wire: WireLockInfo): LockJson {
  const holders = (wire.holders ?? []).map(holderJson);
  return {
    lock: wire.lock,
    mode: holders.length === 0 ? null : wire.mode,
    holders,
    waiters: (wire.waiters ?? []).map(waiterJson),
  };
}

export interface SessionJson {
  readonly session_id: number;
  readonly client_name: string;
  readonly ttl_ms: number;
  readonly since_refresh_ms: number;
  readonly last_refresh_index: number;
  readonly held_locks: readonly string[];
  readonly held_count: number;
  readonly waiting_locks: readonly string[];
  readonly waiting_count: number;
}

export function sessionJson(wire: WireSessionInfo): SessionJson {
  return {
    session_id: Number(wire.session_id),
    client_name: wire.client_name,
    ttl_ms: Number(wire.ttl_ms),
    since_refresh_ms: Number(wire.since_refresh_ms),
    last_refresh_index: Number(wire.last_refresh_index),
    held_locks: [...(wire.held_locks ?? [])],
    held_count: wire.held_count,
    waiting_locks: [...(wire.waiting_locks ?? [])],
    waiting_count: wire.waiting_count,
  };
}

export function memberJson(wire: WireMember) {
  return {
    id: wire.id,
    peer_address: wire.peer_address,
    client_address: wire.client_address,
    learner: wire.learner,
  };
}

/** One node's answer to Status, or why it gave none. */
export function nodeStatusJson(
  address: string,
  status: StatusResponse | undefined,
  problem: string | undefined,
  role: string,
) {
  if (status === undefined) {
    return { address, reachable: false, error: problem ?? 'no answer' };
  }
  return {
    address,
    reachable: true,
    node_id: status.node_id,
    role,
    leader_id: status.leader_id,
    term: Number(status.term),
    commit_index: Number(status.commit_index),
    applied_index: Number(status.applied_index),
    lock_rules_index: Number(status.lock_rules_index),
    lock_rules_digest: status.lock_rules_digest,
    // "" when the node runs open (no auth section).
    policy_digest: status.policy_digest,
    // 0 from nodes older than behaviour versions (they apply 1).
    behaviour_version: status.behaviour_version,
    behaviour_max: status.behaviour_max,
  };
}
