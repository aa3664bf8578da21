import { BEHAVIOUR_BASE, isBehaviourVersion } from '../lock/index.ts';
import type { ConfigChange, Entry, MessageType } from '../raft/types.ts';
import { entryPayloadProblem } from './entry-codec.ts';
import type { ForwardRefusal, PeerMessage } from './peer-message.ts';

/**
 * A shape check for what a peer sent, before any of it reaches the Raft core. The
 * transport decodes bytes into plain values and hands them over as they are; the core
 * asserts its invariants as it goes, so a message with a wrong-typed field could throw
 * half-way through a step and leave the core's state partly changed. Peer links are
 * authenticated when TLS is on, so this is defence in depth against a buggy peer, a
 * version skew or a corrupted payload.
 *
 * Only types and ranges are checked, plus the one property of a message that does not
 * depend on the receiver's state: the entries of an AppendEntries follow prevLogIndex
 * one by one (the log places them by arithmetic on that). Whatever depends on the
 * receiver's state (stale terms, conflicting entries) is Raft's to handle. Unknown extra
 * fields are ignored, so that a newer peer may add some.
 */

type Fields = Readonly<Record<string, unknown>>;
type Problem = string | null;
type FieldsCheck = (fields: Fields, path: string) => Problem;

/** What is wrong with `value` as a PeerMessage, naming the field; null when nothing is. */
export function peerMessageProblem(value: unknown): Problem {
  const message = asFields(value);
  if (message === null) return 'message: expected an object';
  return (
    // Optional: absent (or undefined, as msgpack may carry it) from older peers.
    (message.clusterId === undefined ? null : stringProblem(message.clusterId, 'clusterId')) ??
    // Optional too: absent from peers older than behaviour versions (see behaviour.ts).
    (message.behaviour === undefined ? null : versionProblem(message.behaviour, 'behaviour')) ??
    oneOf(message.kind, 'kind', PEER_MESSAGE_CHECKS) ??
    PEER_MESSAGE_CHECKS[message.kind as PeerMessage['kind']](message, String(message.kind))
  );
}

/** Who a rejected message says it is from, for the report; the field itself may be bad. */
export function claimedSender(value: unknown): string {
  const message = asFields(value);
  const inner = message?.kind === 'raft' ? asFields(message.message) : message;
  return typeof inner?.from === 'string' && inner.from !== '' ? inner.from : '(unknown)';
}

// Keyed by every kind and type in the unions, so a new variant does not compile until it
// has a check here.

const PEER_MESSAGE_CHECKS: { readonly [K in PeerMessage['kind']]: FieldsCheck } = {
  raft: (m, path) => {
    const message = asFields(m.message);
    if (message === null) return `${path}.message: expected an object`;
    return (
      oneOf(message.type, `${path}.message.type`, RAFT_MESSAGE_CHECKS) ??
      envelopeProblem(message, `${path}.${String(message.type)}`)
    );
  },
  forward: (m, path) =>
    addressingProblem(m, path) ??
    idProblem(m.proposalId, `${path}.proposalId`) ??
    bytesProblem(m.data, `${path}.data`) ??
    prefixed(`${path}.data: `, entryPayloadProblem(m.data as Uint8Array)) ??
    // Optional: absent (or undefined, as msgpack may carry it) means an untraced call.
    (m.traceparent === undefined ? null : stringProblem(m.traceparent, `${path}.traceparent`)),
  forwardAccepted: (m, path) =>
    addressingProblem(m, path) ??
    idProblem(m.proposalId, `${path}.proposalId`) ??
    countProblem(m.index, `${path}.index`) ??
    countProblem(m.term, `${path}.term`),
  forwardRefused: (m, path) =>
    addressingProblem(m, path) ??
    idProblem(m.proposalId, `${path}.proposalId`) ??
    oneOf(m.reason, `${path}.reason`, FORWARD_REFUSALS) ??
    (m.leaderId === null ? null : idProblem(m.leaderId, `${path}.leaderId`)),
  // The entries are filtered one by one where they are merged (membership.ts), so that
  // one bad entry does not cost the good ones.
  peerAddresses: (m, path) =>
    addressingProblem(m, path) ??
    (Array.isArray(m.addresses) ? null : `${path}.addresses: expected an array`),
};

const RAFT_MESSAGE_CHECKS: { readonly [T in MessageType]: FieldsCheck } = {
  RequestVote: (m, path) =>
    booleanProblem(m.preVote, `${path}.preVote`) ??
    countProblem(m.lastLogIndex, `${path}.lastLogIndex`) ??
    countProblem(m.lastLogTerm, `${path}.lastLogTerm`) ??
    booleanProblem(m.leadershipTransfer, `${path}.leadershipTransfer`),
  RequestVoteResponse: (m, path) =>
    booleanProblem(m.preVote, `${path}.preVote`) ?? booleanProblem(m.granted, `${path}.granted`),
  AppendEntries: (m, path) =>
    countProblem(m.prevLogIndex, `${path}.prevLogIndex`) ??
    countProblem(m.prevLogTerm, `${path}.prevLogTerm`) ??
    entriesProblem(m.entries, m.prevLogIndex as number, `${path}.entries`) ??
    countProblem(m.leaderCommit, `${path}.leaderCommit`) ??
    (m.commitNotice === undefined ? null : booleanProblem(m.commitNotice, `${path}.commitNotice`)),
  AppendEntriesResponse: (m, path) =>
    booleanProblem(m.success, `${path}.success`) ??
    countProblem(m.matchIndex, `${path}.matchIndex`) ??
    countProblem(m.rejectedIndex, `${path}.rejectedIndex`) ??
    countProblem(m.hintIndex, `${path}.hintIndex`) ??
    (m.hintTerm === null ? null : countProblem(m.hintTerm, `${path}.hintTerm`)),
  Heartbeat: (m, path) =>
    countProblem(m.leaderCommit, `${path}.leaderCommit`) ??
    countProblem(m.readSequence, `${path}.readSequence`),
  HeartbeatResponse: (m, path) => countProblem(m.readSequence, `${path}.readSequence`),
  InstallSnapshot: (m, path) =>
    snapshotMetadataProblem(m.metadata, `${path}.metadata`) ??
    countProblem(m.offset, `${path}.offset`) ??
    countProblem(m.round, `${path}.round`) ??
    bytesProblem(m.chunk, `${path}.chunk`) ??
    booleanProblem(m.done, `${path}.done`),
  InstallSnapshotResponse: (m, path) =>
    countProblem(m.snapshotIndex, `${path}.snapshotIndex`) ??
    countProblem(m.chunkOffset, `${path}.chunkOffset`) ??
    countProblem(m.round, `${path}.round`) ??
    countProblem(m.nextOffset, `${path}.nextOffset`) ??
    booleanProblem(m.installed, `${path}.installed`) ??
    countProblem(m.matchIndex, `${path}.matchIndex`),
  TimeoutNow: () => null,
  ReadIndexRequest: (m, path) => stringProblem(m.context, `${path}.context`),
  ReadIndexResponse: (m, path) =>
    stringProblem(m.context, `${path}.context`) ??
    (m.readIndex === null ? null : countProblem(m.readIndex, `${path}.readIndex`)) ??
    (m.notLeader === undefined ? null : booleanProblem(m.notLeader, `${path}.notLeader`)),
};

const ENTRY_CHECKS: { readonly [K in Entry['kind']]: FieldsCheck } = {
  normal: (e, path) => bytesProblem(e.data, `${path}.data`),
  noop: () => null,
  config: (e, path) => {
    const change = asFields(e.change);
    if (change === null) return `${path}.change: expected an object`;
    return (
      oneOf(change.type, `${path}.change.type`, CONFIG_CHANGE_TYPES) ??
      idProblem(change.nodeId, `${path}.change.nodeId`)
    );
  },
};

const CONFIG_CHANGE_TYPES: { readonly [T in ConfigChange['type']]: true } = {
  addLearner: true,
  promoteLearner: true,
  removeNode: true,
};

const FORWARD_REFUSALS: { readonly [R in ForwardRefusal]: true } = {
  lockRulesUnset: true,
  notLeader: true,
  transferringLeadership: true,
  tooManyUncommitted: true,
  configChangePending: true,
  alreadyMember: true,
  notALearner: true,
  notAMember: true,
  learnerBehind: true,
  tooFewVoters: true,
};

/** The Envelope every Raft message carries, then the fields of its type. */
function envelopeProblem(m: Fields, path: string): Problem {
  return (
    idProblem(m.from, `${path}.from`) ??
    idProblem(m.to, `${path}.to`) ??
    countProblem(m.term, `${path}.term`) ??
    RAFT_MESSAGE_CHECKS[m.type as MessageType](m, path)
  );
}

function addressingProblem(m: Fields, path: string): Problem {
  return idProblem(m.from, `${path}.from`) ?? idProblem(m.to, `${path}.to`);
}

function entriesProblem(value: unknown, prevLogIndex: number, path: string): Problem {
  if (!Array.isArray(value)) return `${path}: expected an array`;
  for (const [position, item] of value.entries()) {
    const at = `${path}[${position}]`;
    const entry = asFields(item);
    if (entry === null) return `${at}: expected an object`;
    const problem =
      oneOf(entry.kind, `${at}.kind`, ENTRY_CHECKS) ??
      countProblem(entry.term, `${at}.term`) ??
      countProblem(entry.index, `${at}.index`) ??
      ENTRY_CHECKS[entry.kind as Entry['kind']](entry, at);
    if (problem !== null) return problem;
    // The follower's log slices the batch by index arithmetic: a gap or a repeat would
    // put an entry at the wrong index rather than fail.
    if (entry.index !== prevLogIndex + 1 + position) {
      return `${at}.index: expected ${prevLogIndex + 1 + position} (prevLogIndex + ${position + 1})`;
    }
  }
  return null;
}

function snapshotMetadataProblem(value: unknown, path: string): Problem {
  const metadata = asFields(value);
  if (metadata === null) return `${path}: expected an object`;
  const config = asFields(metadata.config);
  return (
    countProblem(metadata.index, `${path}.index`) ??
    countProblem(metadata.term, `${path}.term`) ??
    (config === null
      ? `${path}.config: expected an object`
      : (idsProblem(config.voters, `${path}.config.voters`) ??
        idsProblem(config.learners, `${path}.config.learners`)))
  );
}

function idsProblem(value: unknown, path: string): Problem {
  if (!Array.isArray(value)) return `${path}: expected an array`;
  for (const [position, id] of value.entries()) {
    const problem = idProblem(id, `${path}[${position}]`);
    if (problem !== null) return problem;
  }
  return null;
}

// ------------------------------------------------------------------ leaves

/** A plain object: not null, not an array, not bytes. */
function asFields(value: unknown): Fields | null {
  if (typeof value !== 'object' || value === null) return null;
  if (Array.isArray(value) || value instanceof Uint8Array) return null;
  return value as Fields;
}

/** `value` is one of the table's own keys; an inherited one ("toString") is not. */
function oneOf(value: unknown, path: string, table: object): Problem {
  if (typeof value === 'string' && Object.hasOwn(table, value)) return null;
  return `${path}: expected one of ${Object.keys(table).join(', ')}`;
}

/** Terms, indexes, offsets, sequence numbers. */
function countProblem(value: unknown, path: string): Problem {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
    ? null
    : `${path}: expected a non-negative safe integer`;
}

function versionProblem(value: unknown, path: string): Problem {
  return isBehaviourVersion(value)
    ? null
    : `${path}: expected an integer from ${BEHAVIOUR_BASE} up`;
}

function idProblem(value: unknown, path: string): Problem {
  return typeof value === 'string' && value !== '' ? null : `${path}: expected a non-empty string`;
}

function stringProblem(value: unknown, path: string): Problem {
  return typeof value === 'string' ? null : `${path}: expected a string`;
}

function booleanProblem(value: unknown, path: string): Problem {
  return typeof value === 'boolean' ? null : `${path}: expected a boolean`;
}

function prefixed(prefix: string, problem: Problem): Problem {
  return problem === null ? null : `${prefix}${problem}`;
}

function bytesProblem(value: unknown, path: string): Problem {
  return value instanceof Uint8Array ? null : `${path}: expected bytes (a Uint8Array)`;
}
