import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Holder, LockCommand, LockEvent, LockResult } from '../lock/index.ts';
import type { AppliedProposal } from '../node/proposals.ts';
import { type LogIndex, logIndex } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import { behaviourRefusal } from './acquire.ts';
import { identityField, mayRead, requirePermission } from './auth/guard.ts';
import { clientWrite } from './client-write.ts';
import { type ApiContext, type CallScope, header } from './context.ts';
import { ELECTION_WIRE_NAMES, rejectionError } from './errors.ts';
import { serveEventStream } from './event-stream.ts';
import { leaderHeldMs, leaderOf, wireLeader } from './leader-info.ts';
import type {
  LeaderResponse,
  ObserveEvent,
  ObserveEventType,
  ProclaimResponse,
  ResignResponse,
} from './proto.ts';
import { toUint64 } from './proto.ts';
import { parseLeader, parseObserve, parseProclaim, parseResign } from './validate.ts';

/**
 * The calls of leader election besides Campaign (acquire.ts), issue 17. An election is a
 * name whose one holder leads: Proclaim changes the holder's value through the log,
 * Resign is the Release of its grant, Leader reads the holder, Observe follows it.
 */

/** Proposes a command for a call and returns its result, a refusal as its error. */
async function electionWrite<T extends LockResult['type']>(
  context: ApiContext,
  scope: CallScope,
  command: LockCommand,
  request: string,
  expected: T,
): Promise<AppliedProposal & { result: Extract<LockResult, { type: T }> }> {
  const applied = await clientWrite(context, scope, command);
  const { result } = applied;
  if (result.type === 'Rejected') {
    throw (
      behaviourRefusal(context, command.type, result) ??
      rejectionError(result, request, ELECTION_WIRE_NAMES)
    );
  }
  if (result.type !== expected) {
    throw new Error(`${command.type} was answered with ${result.type}, not ${expected}`);
  }
  return applied as AppliedProposal & { result: Extract<LockResult, { type: T }> };
}

export async function proclaim(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<ProclaimResponse> {
  const request = parseProclaim(raw);
  requirePermission(context.auth, scope.caller, 'lock', request.lock);
  const command = withFields(request, identityField(context.auth, scope.caller));
  const { index, result } = await electionWrite(
    context,
    scope,
    command,
    'ProclaimRequest',
    'Proclaimed',
  );
  // The leader as the Proclaim left it: the result says its token and value; the other
  // fields are the holder's, which a Proclaim does not change.
  const holder = context.node.locks
    .holdersOf(request.lock)
    .find((each) => each.token === result.token);
  const leader: Holder = {
    ...(holder ?? fallbackHolder(request.sessionId, result.token)),
    value: result.value,
  };
  const readable = mayRead(context.auth, scope.caller, request.lock);
  return {
    header: header(context.node, index),
    leader: wireLeader(leader, leaderHeldMs(context, request.lock, leader), readable),
  };
}

/**
 * The holder a Proclaim result stands for when the applied state no longer shows it (a
 * later entry ended the term before this answer was made): what the result tells.
 */
function fallbackHolder(sessionId: Holder['sessionId'], token: Holder['token']): Holder {
  // The campaign's entry is unknown then: the token is the nearest index that is known.
  return { sessionId, token, owner: '', mode: 'exclusive', requestIndex: logIndex(token) };
}

/** Resign: the leader's Release, answered as Release is. */
export async function resign(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<ResignResponse> {
  const request = parseResign(raw);
  requirePermission(context.auth, scope.caller, 'lock', request.lock);
  const command = withFields(request, identityField(context.auth, scope.caller));
  const { index } = await electionWrite(context, scope, command, 'ResignRequest', 'Released');
  return { header: header(context.node, index), resigned: true };
}

/** Leader: a read of the election's holder, linearizable unless `stale` (as Describe). */
export async function leader(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<LeaderResponse> {
  const query = parseLeader(raw);
  requirePermission(context.auth, scope.caller, 'read', query.election);
  const run = (locks: ApiContext['node']['locks']) => ({
    holder: leaderOf(locks, query.election, 'LeaderRequest.election'),
    index: locks.lastAppliedIndex,
  });
  const { holder, index } = query.stale ? run(context.node.locks) : await context.node.read(run);
  return {
    header: header(context.node, index),
    has_leader: holder !== null,
    leader:
      holder === null
        ? null
        : wireLeader(holder, leaderHeldMs(context, query.election, holder), true),
  };
}

/**
 * Observe: the leader now, then each change of leadership as this node applies it. The
 * leader is read from the state after each entry that names the election (the hub
 * dispatches an entry's events after its apply), and compared with the last one sent:
 * so an entry that ends a term and elects the next candidate (a release, an expiry) is
 * one ELECTED, not a VACANT followed by an ELECTED.
 */
export function observe(context: ApiContext, call: ServerWritableStream<unknown, ObserveEvent>) {
  serveEventStream(context, call, {
    method: 'Observe',
    parse: parseObserve,
    follow: (election) => new LeaderFollower(context, election),
    afterGap: 'observe again (its first event is the leader now)',
    endsWhenLeaderLost: true,
  });
}

class LeaderFollower {
  /** The leader last sent, null when none was; undefined before the first message. */
  private last: Holder | null | undefined = undefined;

  constructor(
    private readonly context: ApiContext,
    private readonly election: string,
  ) {}

  first(): ObserveEvent {
    const now = this.leaderNow();
    this.last = now;
    return this.event('CURRENT', this.context.node.locks.lastAppliedIndex, now);
  }

  next(index: LogIndex, event: LockEvent): ObserveEvent | null {
    if (!('lock' in event) || event.lock !== this.election) return null;
    const now = this.leaderNow();
    const last = this.last ?? null;
    const type = changeOf(last, now, event);
    if (type === null) return null;
    this.last = now;
    return this.event(type, index, now);
  }

  private leaderNow(): Holder | null {
    return leaderOf(this.context.node.locks, this.election, 'ObserveRequest.election');
  }

  private event(type: ObserveEventType, index: number, holder: Holder | null): ObserveEvent {
    return {
      header: header(this.context.node, index),
      type,
      election: this.election,
      has_leader: holder !== null,
      leader:
        holder === null
          ? null
          : wireLeader(holder, leaderHeldMs(this.context, this.election, holder), true),
      index: toUint64(index),
    };
  }
}

/** What changed from the leader last sent to the one now; null: nothing to tell. */
function changeOf(
  last: Holder | null,
  now: Holder | null,
  event: LockEvent,
): ObserveEventType | null {
  if (now === null) return last === null ? null : 'VACANT';
  if (last === null || last.token !== now.token) return 'ELECTED';
  // A Proclaim is told even when it repeats the value: the leader announced it.
  if (event.type === 'proclaimed' || last.value !== now.value) return 'PROCLAIMED';
  return null;
}
