import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { claimedSender, peerMessageProblem } from '../../src/node/peer-message-check.ts';
import type { Entry, Message } from '../../src/raft/types.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';
import { sleep, TestCluster, writeVia } from '../node/cluster-harness.ts';

/**
 * The shape check the node runs on every message from a peer before the Raft core sees
 * it: every variant passes when well-formed, each malformed field is named, a random
 * one-field corruption never makes the check throw, and through the real receive path a
 * malformed message is dropped and reported while the cluster keeps committing.
 */

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const envelope = { from: n1, to: n2, term: term(7) };
const FORWARDED = encodeEntry({
  proposalId: 'n2/boot/41',
  command: { type: 'OpenSession', ttlMs: 10_000, clientName: 'c', requestId: 'r1' },
});

const ENTRIES: readonly Entry[] = [
  { kind: 'noop', term: term(7), index: logIndex(11) },
  { kind: 'normal', term: term(7), index: logIndex(12), data: bytes(1, 2, 3) },
  {
    kind: 'config',
    term: term(7),
    index: logIndex(13),
    change: { type: 'addLearner', nodeId: nodeId('n4') },
  },
  {
    kind: 'config',
    term: term(7),
    index: logIndex(14),
    change: { type: 'promoteLearner', nodeId: nodeId('n4') },
  },
  {
    kind: 'config',
    term: term(7),
    index: logIndex(15),
    change: { type: 'removeNode', nodeId: nodeId('n3') },
  },
];

const RAFT_MESSAGES: readonly Message[] = [
  {
    ...envelope,
    type: 'RequestVote',
    preVote: true,
    lastLogIndex: logIndex(10),
    lastLogTerm: term(6),
    leadershipTransfer: false,
  },
  { ...envelope, type: 'RequestVoteResponse', preVote: false, granted: true },
  {
    ...envelope,
    type: 'AppendEntries',
    prevLogIndex: logIndex(10),
    prevLogTerm: term(6),
    entries: ENTRIES,
    leaderCommit: logIndex(9),
  },
  // A heartbeat-like append with nothing new, from the very start of the log.
  {
    ...envelope,
    type: 'AppendEntries',
    prevLogIndex: logIndex(0),
    prevLogTerm: term(0),
    entries: [],
    leaderCommit: logIndex(0),
  },
  {
    ...envelope,
    type: 'AppendEntriesResponse',
    success: false,
    matchIndex: logIndex(0),
    rejectedIndex: logIndex(10),
    hintIndex: logIndex(8),
    hintTerm: term(5),
  },
  {
    ...envelope,
    type: 'AppendEntriesResponse',
    success: true,
    matchIndex: logIndex(15),
    rejectedIndex: logIndex(0),
    hintIndex: logIndex(0),
    hintTerm: null,
  },
  { ...envelope, type: 'Heartbeat', leaderCommit: logIndex(15), readSequence: 3 },
  { ...envelope, type: 'HeartbeatResponse', readSequence: 3 },
  {
    ...envelope,
    type: 'InstallSnapshot',
    metadata: {
      index: logIndex(100),
      term: term(6),
      config: { voters: [n1, n2, nodeId('n3')], learners: [nodeId('n4')] },
    },
    offset: 65_536,
    round: 2,
    chunk: bytes(9, 8, 7),
    done: false,
  },
  {
    ...envelope,
    type: 'InstallSnapshotResponse',
    snapshotIndex: logIndex(100),
    chunkOffset: 65_536,
    round: 2,
    nextOffset: 131_072,
    installed: false,
    matchIndex: logIndex(0),
  },
  { ...envelope, type: 'TimeoutNow' },
  { ...envelope, type: 'ReadIndexRequest', context: 'read-17' },
  { ...envelope, type: 'ReadIndexResponse', context: 'read-17', readIndex: logIndex(15) },
  { ...envelope, type: 'ReadIndexResponse', context: 'read-18', readIndex: null },
];

const WELL_FORMED: readonly PeerMessage[] = [
  ...RAFT_MESSAGES.map((message): PeerMessage => ({ kind: 'raft', message })),
  { kind: 'forward', from: n2, to: n1, proposalId: 'n2-41', data: FORWARDED },
  {
    kind: 'forward',
    from: n2,
    to: n1,
    proposalId: 'n2-42',
    // A command the state machine will refuse (invalidArgument) is still well-formed here.
    data: encodeEntry({ proposalId: null, command: {} as LockCommand }),
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  },
  {
    kind: 'forwardAccepted',
    from: n1,
    to: n2,
    proposalId: 'n2-41',
    index: logIndex(16),
    term: term(7),
  },
  {
    kind: 'forwardRefused',
    from: n1,
    to: n2,
    proposalId: 'n2-41',
    reason: 'notLeader',
    leaderId: nodeId('n3'),
  },
  {
    kind: 'forwardRefused',
    from: n1,
    to: n2,
    proposalId: 'n2-42',
    reason: 'tooManyUncommitted',
    leaderId: null,
  },
  {
    kind: 'peerAddresses',
    from: n1,
    to: n2,
    addresses: [{ id: n1, peerAddress: '10.0.0.1:7001', clientAddress: '10.0.0.1:7000' }],
  },
];

/** The Packr options grpc.ts pins: what a peer's bytes decode to on this side. */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function label(message: PeerMessage): string {
  return message.kind === 'raft' ? `raft ${message.message.type}` : message.kind;
}

describe('peerMessageProblem: well-formed messages', () => {
  it.each(WELL_FORMED.map((message) => [label(message), message] as const))(
    'accepts %s',
    (_, message) => {
      expect(peerMessageProblem(message)).toBeNull();
    },
  );

  it('accepts every message after a msgpack round trip (bytes come back as Buffers)', () => {
    for (const message of WELL_FORMED) {
      expect(peerMessageProblem(packr.unpack(packr.pack(message)))).toBeNull();
    }
  });
});

/** A well-formed message of each shape the table corrupts, as a plain mutable value. */
function raft(type: Message['type'], index = 0): Record<string, unknown> {
  const message = RAFT_MESSAGES.filter((candidate) => candidate.type === type)[index];
  if (message === undefined) throw new Error(`no ${type} fixture`);
  return { kind: 'raft', message: structuredClone(message) };
}
function peer(kind: PeerMessage['kind']): Record<string, unknown> {
  const message = WELL_FORMED.find((candidate) => candidate.kind === kind);
  if (message === undefined) throw new Error(`no ${kind} fixture`);
  return structuredClone(message) as Record<string, unknown>;
}
function inner(message: Record<string, unknown>): Record<string, unknown> {
  return message.message as Record<string, unknown>;
}
function entries(message: Record<string, unknown>): Record<string, unknown>[] {
  return inner(message).entries as Record<string, unknown>[];
}
function changed<T>(value: T, change: (value: T) => void): T {
  change(value);
  return value;
}

const MALFORMED: readonly (readonly [string, unknown, string])[] = [
  ['null', null, 'message: expected an object'],
  ['an array', [], 'message: expected an object'],
  ['bytes', bytes(1), 'message: expected an object'],
  ['no kind', { from: 'n1', to: 'n2' }, 'kind: expected one of'],
  ['an unknown kind', { kind: 'gossip' }, 'kind: expected one of'],
  ['an inherited kind', { kind: 'toString' }, 'kind: expected one of'],
  ['raft without a message', { kind: 'raft' }, 'raft.message: expected an object'],
  [
    'an unknown raft type',
    changed(raft('TimeoutNow'), (m) => {
      inner(m).type = 'Snapshot';
    }),
    'raft.message.type: expected one of',
  ],
  [
    'an empty sender',
    changed(raft('Heartbeat'), (m) => {
      inner(m).from = '';
    }),
    'raft.Heartbeat.from: expected a non-empty string',
  ],
  [
    'a numeric recipient',
    changed(raft('TimeoutNow'), (m) => {
      inner(m).to = 2;
    }),
    'raft.TimeoutNow.to: expected a non-empty string',
  ],
  [
    'a negative term',
    changed(raft('RequestVote'), (m) => {
      inner(m).term = -1;
    }),
    'raft.RequestVote.term: expected a non-negative safe integer',
  ],
  [
    'a term past 2^53',
    changed(raft('RequestVoteResponse'), (m) => {
      inner(m).term = 2 ** 53;
    }),
    'raft.RequestVoteResponse.term: expected a non-negative safe integer',
  ],
  [
    'a string preVote',
    changed(raft('RequestVote'), (m) => {
      inner(m).preVote = 'true';
    }),
    'raft.RequestVote.preVote: expected a boolean',
  ],
  [
    'a missing leadershipTransfer',
    changed(raft('RequestVote'), (m) => {
      delete inner(m).leadershipTransfer;
    }),
    'raft.RequestVote.leadershipTransfer: expected a boolean',
  ],
  [
    'a fractional lastLogIndex',
    changed(raft('RequestVote'), (m) => {
      inner(m).lastLogIndex = 1.5;
    }),
    'raft.RequestVote.lastLogIndex: expected a non-negative safe integer',
  ],
  [
    'entries that are not an array',
    changed(raft('AppendEntries'), (m) => {
      inner(m).entries = { 0: ENTRIES[0] };
    }),
    'raft.AppendEntries.entries: expected an array',
  ],
  [
    'a string entry term',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[3] as Record<string, unknown>).term = '7';
    }),
    'raft.AppendEntries.entries[3].term: expected a non-negative safe integer',
  ],
  [
    'a null entry',
    changed(raft('AppendEntries'), (m) => {
      entries(m)[1] = null as never;
    }),
    'raft.AppendEntries.entries[1]: expected an object',
  ],
  [
    'an unknown entry kind',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[0] as Record<string, unknown>).kind = 'blob';
    }),
    'raft.AppendEntries.entries[0].kind: expected one of',
  ],
  [
    'a normal entry with string data',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[1] as Record<string, unknown>).data = 'abc';
    }),
    'raft.AppendEntries.entries[1].data: expected bytes',
  ],
  [
    'a normal entry with data as a number array',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[1] as Record<string, unknown>).data = [1, 2, 3];
    }),
    'raft.AppendEntries.entries[1].data: expected bytes',
  ],
  [
    'a config entry without a change',
    changed(raft('AppendEntries'), (m) => {
      delete (entries(m)[2] as Record<string, unknown>).change;
    }),
    'raft.AppendEntries.entries[2].change: expected an object',
  ],
  [
    'an unknown config change type',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[2]?.change as Record<string, unknown>).type = 'addVoter';
    }),
    'raft.AppendEntries.entries[2].change.type: expected one of',
  ],
  [
    'a config change with an empty node id',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[4]?.change as Record<string, unknown>).nodeId = '';
    }),
    'raft.AppendEntries.entries[4].change.nodeId: expected a non-empty string',
  ],
  [
    'entries with a gap',
    changed(raft('AppendEntries'), (m) => {
      (entries(m)[2] as Record<string, unknown>).index = 14;
    }),
    'raft.AppendEntries.entries[2].index: expected 13',
  ],
  [
    'entries that do not follow prevLogIndex',
    changed(raft('AppendEntries'), (m) => {
      inner(m).prevLogIndex = 9;
    }),
    'raft.AppendEntries.entries[0].index: expected 10',
  ],
  [
    'an undefined hintTerm (null is the only absent value)',
    changed(raft('AppendEntriesResponse'), (m) => {
      inner(m).hintTerm = undefined;
    }),
    'raft.AppendEntriesResponse.hintTerm: expected a non-negative safe integer',
  ],
  [
    'a negative readSequence',
    changed(raft('HeartbeatResponse'), (m) => {
      inner(m).readSequence = -3;
    }),
    'raft.HeartbeatResponse.readSequence: expected a non-negative safe integer',
  ],
  [
    'a snapshot without metadata',
    changed(raft('InstallSnapshot'), (m) => {
      inner(m).metadata = null;
    }),
    'raft.InstallSnapshot.metadata: expected an object',
  ],
  [
    'a snapshot config with a numeric voter',
    changed(raft('InstallSnapshot'), (m) => {
      ((inner(m).metadata as Record<string, unknown>).config as Record<string, unknown>).voters = [
        'n1',
        2,
      ];
    }),
    'raft.InstallSnapshot.metadata.config.voters[1]: expected a non-empty string',
  ],
  [
    'a snapshot config without learners',
    changed(raft('InstallSnapshot'), (m) => {
      delete ((inner(m).metadata as Record<string, unknown>).config as Record<string, unknown>)
        .learners;
    }),
    'raft.InstallSnapshot.metadata.config.learners: expected an array',
  ],
  [
    'a snapshot chunk as a string',
    changed(raft('InstallSnapshot'), (m) => {
      inner(m).chunk = 'AAEC';
    }),
    'raft.InstallSnapshot.chunk: expected bytes',
  ],
  [
    'a NaN nextOffset',
    changed(raft('InstallSnapshotResponse'), (m) => {
      inner(m).nextOffset = Number.NaN;
    }),
    'raft.InstallSnapshotResponse.nextOffset: expected a non-negative safe integer',
  ],
  [
    'a numeric read context',
    changed(raft('ReadIndexRequest'), (m) => {
      inner(m).context = 17;
    }),
    'raft.ReadIndexRequest.context: expected a string',
  ],
  [
    'a string readIndex',
    changed(raft('ReadIndexResponse'), (m) => {
      inner(m).readIndex = '15';
    }),
    'raft.ReadIndexResponse.readIndex: expected a non-negative safe integer',
  ],
  [
    'a forward without data',
    changed(peer('forward'), (m) => {
      delete m.data;
    }),
    'forward.data: expected bytes',
  ],
  [
    'a forward whose data is msgpack nil (it stopped every replica that applied it)',
    changed(peer('forward'), (m) => {
      m.data = bytes(0xc0);
    }),
    'forward.data: expected an entry payload',
  ],
  [
    'a forward whose data does not decode',
    changed(peer('forward'), (m) => {
      m.data = bytes(0x82, 0xa4);
    }),
    'forward.data: does not decode',
  ],
  [
    'a forward whose command is not an object',
    changed(peer('forward'), (m) => {
      m.data = packr.pack({ p: 'n2/boot/43', c: 'OpenSession' });
    }),
    'forward.data: c: expected a command object',
  ],
  [
    'a forward whose proposal id in the entry is a number',
    changed(peer('forward'), (m) => {
      m.data = packr.pack({ p: 43, c: {} });
    }),
    'forward.data: p: expected a proposal id or null',
  ],
  [
    'a forward with a numeric traceparent',
    changed(peer('forward'), (m) => {
      m.traceparent = 1;
    }),
    'forward.traceparent: expected a string',
  ],
  [
    'a forward with an empty proposal id',
    changed(peer('forward'), (m) => {
      m.proposalId = '';
    }),
    'forward.proposalId: expected a non-empty string',
  ],
  [
    'a forwardAccepted with a negative index',
    changed(peer('forwardAccepted'), (m) => {
      m.index = -16;
    }),
    'forwardAccepted.index: expected a non-negative safe integer',
  ],
  [
    'a forwardRefused with an unknown reason',
    changed(peer('forwardRefused'), (m) => {
      m.reason = 'busy';
    }),
    'forwardRefused.reason: expected one of',
  ],
  [
    'a forwardRefused with an empty leader id',
    changed(peer('forwardRefused'), (m) => {
      m.leaderId = '';
    }),
    'forwardRefused.leaderId: expected a non-empty string',
  ],
  [
    'peerAddresses with an object for addresses',
    changed(peer('peerAddresses'), (m) => {
      m.addresses = {};
    }),
    'peerAddresses.addresses: expected an array',
  ],
  [
    'a cluster id that is not a string',
    changed(peer('forward'), (m) => {
      m.clusterId = 7;
    }),
    'clusterId: expected a string',
  ],
  [
    'a behaviour stamp that is no version',
    changed(peer('forward'), (m) => {
      m.behaviour = 0;
    }),
    'behaviour: expected an integer from 1 up',
  ],
  [
    'peerAddresses without a recipient',
    changed(peer('peerAddresses'), (m) => {
      delete m.to;
    }),
    'peerAddresses.to: expected a non-empty string',
  ],
];

describe('peerMessageProblem: the cluster id', () => {
  it('is optional, and any string passes the shape check (the node judges its value)', () => {
    for (const clusterId of [undefined, '', 'c-1']) {
      const message = { ...raft('Heartbeat'), ...(clusterId === undefined ? {} : { clusterId }) };
      expect(peerMessageProblem(message), String(clusterId)).toBeNull();
    }
  });
});

describe('peerMessageProblem: the behaviour stamp', () => {
  it('is optional (older peers send none), and any version passes, a future one too', () => {
    for (const behaviour of [undefined, 1, 2, 99]) {
      const message = { ...raft('Heartbeat'), ...(behaviour === undefined ? {} : { behaviour }) };
      expect(peerMessageProblem(message), String(behaviour)).toBeNull();
    }
  });
});

describe('peerMessageProblem: malformed messages', () => {
  it.each(MALFORMED)('rejects %s', (_, message, problem) => {
    expect(peerMessageProblem(message)).toContain(problem);
    expect(peerMessageProblem(message)?.startsWith(problem.split(':')[0] ?? '')).toBe(true);
  });

  it('reports who a rejected message claims to be from', () => {
    const heartbeat = raft('Heartbeat');
    inner(heartbeat).term = -1;
    expect(claimedSender(heartbeat)).toBe('n1');
    const forward = peer('forward');
    delete forward.data;
    expect(claimedSender(forward)).toBe('n2');
    expect(claimedSender({ kind: 'raft', message: 'x' })).toBe('(unknown)');
    expect(claimedSender(42)).toBe('(unknown)');
  });
});

// ------------------------------------------------------------------ property

type Key = string | number;

/**
 * Every field of a well-formed message, as paths. The entries of `addresses` are left
 * out: the check only requires the array (membership.ts filters its entries).
 */
function fieldPaths(value: unknown, prefix: readonly Key[] = []): Key[][] {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return [];
  if (prefix.at(-1) === 'addresses') return [];
  const children: [Key, unknown][] = Array.isArray(value)
    ? value.map((item, position) => [position, item])
    : Object.entries(value);
  return children.flatMap(([key, child]) => [
    [...prefix, key],
    ...fieldPaths(child, [...prefix, key]),
  ]);
}

function valueAt(root: unknown, path: readonly Key[]): unknown {
  return path.reduce<unknown>((node, key) => (node as Record<Key, unknown>)[key], root);
}

function withValueAt(root: unknown, path: readonly Key[], value: unknown): unknown {
  const copy = structuredClone(root);
  const parent = valueAt(copy, path.slice(0, -1)) as Record<Key, unknown>;
  parent[path.at(-1) as Key] = value;
  return copy;
}

/** How the check names the field at `path` of `message`. */
function checkPath(message: PeerMessage, path: readonly Key[]): string {
  const rest = (keys: readonly Key[]): string =>
    keys.map((key) => (typeof key === 'number' ? `[${key}]` : `.${key}`)).join('');
  if (message.kind !== 'raft') return path[0] === 'kind' ? 'kind' : `${message.kind}${rest(path)}`;
  if (path.length === 1) return path[0] === 'kind' ? 'kind' : 'raft.message';
  if (path.length === 2 && path[1] === 'type') return 'raft.message.type';
  return `raft.${message.message.type}${rest(path.slice(1))}`;
}

const NULLABLE = new Set<Key>(['hintTerm', 'readIndex', 'leaderId']);

/**
 * Whether `replacement` cannot stand where `original` stood, judged by type alone. A
 * replacement of the right type may still be refused (a count that breaks the run of
 * entry indexes), so it is not judged.
 */
function wrongType(original: unknown, replacement: unknown, field: Key): boolean {
  if (replacement === null && NULLABLE.has(field)) return false;
  if (replacement === undefined && field === 'traceparent') return false;
  if (typeof original === 'number') {
    return !(
      typeof replacement === 'number' &&
      Number.isSafeInteger(replacement) &&
      replacement >= 0
    );
  }
  if (typeof original === 'string') return typeof replacement !== 'string';
  if (typeof original === 'boolean') return typeof replacement !== 'boolean';
  if (original instanceof Uint8Array) return !(replacement instanceof Uint8Array);
  if (Array.isArray(original)) return !Array.isArray(replacement);
  if (typeof original === 'object' && original !== null) {
    return (
      typeof replacement !== 'object' ||
      replacement === null ||
      Array.isArray(replacement) ||
      replacement instanceof Uint8Array
    );
  }
  return false;
}

const corruption = fc.constantFrom(...WELL_FORMED).chain((message) =>
  fc.record({
    message: fc.constant(message),
    path: fc.constantFrom(...fieldPaths(message)),
    replacement: fc.oneof(
      fc.anything(),
      fc.uint8Array({ maxLength: 4 }),
      fc.constantFrom(-1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, '', 'toString'),
      fc.integer({ min: 0, max: 20 }),
    ),
  }),
);

describe('peerMessageProblem: one corrupted field', () => {
  it('never throws, and rejects a wrong-typed field by name', () => {
    fc.assert(
      fc.property(corruption, ({ message, path, replacement }) => {
        const corrupted = withValueAt(message, path, replacement);
        const problem = peerMessageProblem(corrupted);
        expect(problem === null || typeof problem === 'string').toBe(true);
        if (wrongType(valueAt(message, path), replacement, path.at(-1) as Key)) {
          expect(problem).not.toBeNull();
          expect(problem?.startsWith(`${checkPath(message, path)}:`)).toBe(true);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});

// ------------------------------------------------------------------ receive paths

describe('malformed peer messages through the receive path', () => {
  let cluster: TestCluster | null = null;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = null;
  });

  it('a node drops and reports them, and the cluster still commits writes', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const rejected: [string, string][] = [];
    const failures: Error[] = [];
    leader.observe({
      peerMessageRejected: (from, problem) => rejected.push([from, problem]),
      failed: (error) => failures.push(error),
    });

    // A peer that claims to be a follower, sending a term the core would take for real
    // and an entry that would throw in the log's bookkeeping.
    const rogue = c.network.connect(nodeId('rogue'));
    const follower = await c.follower();
    const append = changed(raft('AppendEntries'), (m) => {
      Object.assign(inner(m), { from: follower.id, to: leader.id, term: 1_000 });
      (entries(m)[0] as Record<string, unknown>).term = 'seven';
    });
    rogue.send(append as PeerMessage);
    rogue.send({ kind: 'forwardAccepted', to: leader.id } as unknown as PeerMessage);
    for (let attempt = 0; attempt < 100 && rejected.length < 2; attempt++) await sleep(10);

    expect(rejected).toEqual([
      [follower.id, 'raft.AppendEntries.entries[0].term: expected a non-negative safe integer'],
      ['(unknown)', 'forwardAccepted.from: expected a non-empty string'],
    ]);
    const result = await writeVia(() => c.follower(), {
      type: 'OpenSession',
      ttlMs: 5_000,
      clientName: 'after-garbage',
      requestId: c.requestId(),
    });
    expect(result.type).toBe('SessionOpened');
    // Still the leader of the same term: the bogus term 1000 never reached the core.
    expect(leader.status().role).toBe('leader');
    expect(leader.status().term).toBeLessThan(1_000);
    expect(failures).toEqual([]);
  });

  it('GrpcTransport drops an undecodable batch, reports it, and keeps the stream', async () => {
    const rejected: [string, string][] = [];
    const transport = await GrpcTransport.start({
      id: n1,
      listenAddress: '127.0.0.1:0',
      peers: new Map(),
      queueMessagesMax: 16,
      batchMessagesMax: 16,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 100,
      onRejected: (from, problem) => rejected.push([from, problem]),
    });
    const received: unknown[] = [];
    transport.onMessage((message) => received.push(message));
    const definition = protoLoader.loadSync(
      fileURLToPath(new URL('../../proto/raft.proto', import.meta.url)),
      { keepCase: true, longs: String, defaults: true },
    );
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dlm: { raft: { v1: { Raft: grpc.ServiceClientConstructor } } };
    };
    const client = new loaded.dlm.raft.v1.Raft(
      `127.0.0.1:${transport.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & { Stream(): grpc.ClientDuplexStream<unknown, unknown> };
    const stream = client.Stream();
    stream.on('error', () => {});
    try {
      // An array header promising two items, with none after it; then a map, not a batch.
      stream.write({ from: 'rogue', to: n1, payload: bytes(0x92) });
      stream.write({ from: 'rogue', to: n1, payload: packr.pack({ kind: 'raft' }) });
      const good = WELL_FORMED[0];
      stream.write({ from: 'n2', to: n1, payload: packr.pack([good]) });
      for (let attempt = 0; attempt < 200 && received.length === 0; attempt++) await sleep(10);

      expect(rejected).toHaveLength(2);
      expect(rejected[0]?.[0]).toBe('rogue');
      expect(rejected[0]?.[1]).toMatch(/^undecodable batch: /);
      expect(rejected[1]).toEqual(['rogue', 'batch: expected an array']);
      // The stream survived, and what it carried next reached the handler.
      expect(received).toHaveLength(1);
      expect(peerMessageProblem(received[0])).toBeNull();
    } finally {
      stream.end();
      client.close();
      await transport.close();
    }
  });
});
