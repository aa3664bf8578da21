/**
 * The cluster config (src/config): defaults, dataDir resolution, and the exact field
 * path in every kind of error an operator can make. Property tests check that no
 * mutation of a valid config escapes as anything but a ConfigError, and that the JSON
 * error locator agrees with JSON.parse.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closestName } from '../../src/config/fields.ts';
import {
  type ClusterConfigInput,
  type ClusterFileConfig,
  ConfigError,
  clientTlsFiles,
  DEFAULT_RUNTIME_CONFIG,
  DEFAULT_TICK_INTERVAL_MS,
  findNode,
  loadClusterConfig,
  nodeDataDir,
  nodeTlsFiles,
  parseAddress,
  parseClusterConfig,
} from '../../src/config/index.ts';
import { findJsonSyntaxError } from '../../src/config/json-position.ts';
import { PEER_FRAME_HEADROOM_BYTES } from '../../src/config/peer-limits.ts';
import { DEFAULT_LOCK_LIMITS } from '../../src/lock/limits.ts';
import { COMPACTION_SLICE_ENTRIES } from '../../src/node/snapshotter.ts';
import { DEFAULT_RAFT_OPTIONS } from '../../src/raft/options.ts';

const BASE_DIR = '/etc/dlm';

function minimalConfig(): ClusterConfigInput {
  return {
    nodes: [1, 2, 3].map((n) => ({
      id: `n${n}`,
      peerAddress: `127.0.0.1:700${n}`,
      clientAddress: `127.0.0.1:710${n}`,
      metricsAddress: `127.0.0.1:910${n}`,
    })),
    dataDir: './data',
  };
}

/** A path into the JSON tree of a config. */
type JsonPath = readonly (string | number)[];

/** Marks a field to delete in an edit. */
const DELETE = Symbol('delete');

type Edit = readonly [JsonPath, unknown];

/** The minimal config with edits applied; an array element deleted is removed, not left a hole. */
function edited(...edits: readonly Edit[]): unknown {
  const copy: unknown = structuredClone(minimalConfig());
  for (const [path, value] of edits) setAt(copy, path, value);
  return copy;
}

/** splice, by hand: splice would honour an own `constructor` that a mutation may have added. */
function removeAt(array: unknown[], index: number): void {
  for (let i = index; i < array.length - 1; i++) array[i] = array[i + 1];
  array.length -= 1;
}

function setAt(document: unknown, path: JsonPath, value: unknown): void {
  let parent = document as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (value !== DELETE) parent[last] = value;
  else if (Array.isArray(parent) && typeof last === 'number') removeAt(parent, last);
  else delete parent[last];
}

/** The problems parse reports; fails the test if it does not throw a ConfigError. */
function problemsOf(json: unknown): readonly string[] {
  try {
    parseClusterConfig(json, BASE_DIR);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError, but the config parsed');
}

describe('optional lock rules (issue 17)', () => {
  it('are absent unless the file sets them, and kept as set when it does', () => {
    const plain = parseClusterConfig(minimalConfig(), BASE_DIR);
    expect(plain.lock.locksPerAcquireMax).toBeUndefined();
    expect(plain.lock.deadlockCheckStepsMax).toBeUndefined();
    const optional = {
      locksPerAcquireMax: 8,
      deadlockCheckStepsMax: 5_000,
      semaphoreLimitMax: 50,
      candidatesPerElectionMax: 20,
      electionValueBytesMax: 512,
    };
    const set = parseClusterConfig({ ...minimalConfig(), lock: optional }, BASE_DIR);
    expect(set.lock).toEqual({ ...DEFAULT_LOCK_LIMITS, ...optional });
  });
});

describe('defaults', () => {
  it('a config with only nodes and dataDir is valid, with every default filled in', () => {
    const config = parseClusterConfig(minimalConfig(), BASE_DIR);
    expect(config.nodes.map((node) => node.id)).toEqual(['n1', 'n2', 'n3']);
    expect(config.raft).toEqual({
      ...DEFAULT_RAFT_OPTIONS,
      tickIntervalMs: DEFAULT_TICK_INTERVAL_MS,
    });
    expect(config.lock).toEqual(DEFAULT_LOCK_LIMITS);
    expect(config.runtime).toEqual(DEFAULT_RUNTIME_CONFIG);
  });

  it('the result is frozen all the way down', () => {
    const config = parseClusterConfig(minimalConfig(), BASE_DIR);
    for (const part of [
      config,
      config.nodes,
      config.nodes[0],
      config.raft,
      config.lock,
      config.runtime,
    ]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
  });

  it('a field given overrides only itself', () => {
    const input = {
      ...minimalConfig(),
      raft: { tickIntervalMs: 20, preVote: false },
      lock: { lockDelayMs: 500 },
      runtime: { shutdownDrainMs: 0 },
    };
    const config = parseClusterConfig(input, BASE_DIR);
    expect(config.raft).toEqual({ ...DEFAULT_RAFT_OPTIONS, tickIntervalMs: 20, preVote: false });
    expect(config.lock).toEqual({ ...DEFAULT_LOCK_LIMITS, lockDelayMs: 500 });
    expect(config.runtime).toEqual({ ...DEFAULT_RUNTIME_CONFIG, shutdownDrainMs: 0 });
  });

  it('the default runtime timings are consistent with each other', () => {
    const runtime = DEFAULT_RUNTIME_CONFIG;
    expect(runtime.peerReconnectDelayMsMin).toBeLessThanOrEqual(runtime.peerReconnectDelayMsMax);
    expect(runtime.compactionRetainEntries).toBeLessThan(runtime.snapshotEntriesThreshold);
    // The node's own default, for options built without a config (tests, tools).
    expect(runtime.compactionSliceEntries).toBe(COMPACTION_SLICE_ENTRIES);
    // A proposal must outlive an election (up to twice the timeout, with its random extra).
    const electionMsMax = 2 * DEFAULT_TICK_INTERVAL_MS * DEFAULT_RAFT_OPTIONS.electionTimeoutTicks;
    expect(runtime.proposalTimeoutMs).toBeGreaterThan(electionMsMax);
  });

  it.each([
    ['lock.lockDelayMs', { lock: { lockDelayMs: 0 } }],
    ['raft.learnerPromotionLagEntriesMax', { raft: { learnerPromotionLagEntriesMax: 0 } }],
    ['runtime.compactionRetainEntries', { runtime: { compactionRetainEntries: 0 } }],
    ['runtime.heapGrowingPercent', { runtime: { heapGrowingPercent: 0 } }],
  ])('%s may be 0', (_path, section) => {
    expect(() => parseClusterConfig({ ...minimalConfig(), ...section }, BASE_DIR)).not.toThrow();
  });

  it('a bracketed IPv6 address is accepted', () => {
    const input = edited([['nodes', 0, 'peerAddress'], '[::1]:7001']);
    expect(parseClusterConfig(input, BASE_DIR).nodes[0]?.peerAddress).toBe('[::1]:7001');
    expect(parseAddress('[::1]:7001')).toEqual({ ok: true, address: { host: '::1', port: 7001 } });
  });
});

describe('tls (issue 15)', () => {
  const base = { caFile: 'ca.pem', certFile: 'nodes/{node}.pem', keyFile: 'nodes/{node}-key.pem' };
  it('{node} stands for the node id; the CLI needs its own files then', () => {
    const tls = parseClusterConfig({ ...minimalConfig(), tls: base }, BASE_DIR).tls;
    if (tls === null) throw new Error('no tls');
    expect(nodeTlsFiles(tls, 'n2')).toEqual({
      caFile: '/etc/dlm/ca.pem',
      certFile: '/etc/dlm/nodes/n2.pem',
      keyFile: '/etc/dlm/nodes/n2-key.pem',
    });
    expect(() => clientTlsFiles(tls)).toThrow(/set tls.clientCertFile and tls.clientKeyFile/);
    const withClient = { ...base, clientCertFile: 'c.pem', clientKeyFile: 'c-key.pem' };
    const both = parseClusterConfig({ ...minimalConfig(), tls: withClient }, BASE_DIR).tls;
    if (both === null) throw new Error('no tls');
    expect(clientTlsFiles(both).certFile).toBe('/etc/dlm/c.pem');
  });

  it('refuses a client file without its pair, and an unknown metrics mode, naming them', () => {
    const tls = { ...base, clientCertFile: 'c.pem', metrics: 'https' };
    expect(() => parseClusterConfig({ ...minimalConfig(), tls }, BASE_DIR)).toThrow(
      /clientCertFile and clientKeyFile go together[\s\S]*tls.metrics: expected one of plaintext, tls, mutual/,
    );
  });

  it('message sizes: a peer message must carry a snapshot chunk, a request the largest KeepAlive', () => {
    const runtime = { peerMessageBytesMax: 100_000, clientRequestBytesMax: 1_000 };
    expect(() => parseClusterConfig({ ...minimalConfig(), runtime }, BASE_DIR)).toThrow(
      /runtime.peerMessageBytesMax: 100000 bytes cannot carry one snapshot chunk[\s\S]*runtime.clientRequestBytesMax: 1000 bytes is below 262144/,
    );
  });
});

describe('dataDir', () => {
  it('a relative dataDir is resolved against the config file folder', () => {
    expect(parseClusterConfig(minimalConfig(), BASE_DIR).tls).toBeNull();
    const tls = { caFile: 'certs/ca.pem', certFile: '/pki/node.pem', keyFile: 'node-key.pem' };
    expect(parseClusterConfig({ ...minimalConfig(), tls }, BASE_DIR).tls).toEqual({
      caFile: '/etc/dlm/certs/ca.pem',
      certFile: '/pki/node.pem',
      keyFile: '/etc/dlm/node-key.pem',
      clientCertFile: null,
      clientKeyFile: null,
      metrics: 'plaintext',
    });
    expect(parseClusterConfig(minimalConfig(), BASE_DIR).dataDir).toBe('/etc/dlm/data');
    const input = { ...minimalConfig(), dataDir: '../var/dlm' };
    expect(parseClusterConfig(input, BASE_DIR).dataDir).toBe('/etc/var/dlm');
  });

  it('an absolute dataDir is kept', () => {
    const input = { ...minimalConfig(), dataDir: '/var/lib/dlm' };
    expect(parseClusterConfig(input, BASE_DIR).dataDir).toBe('/var/lib/dlm');
  });

  it('each node keeps its data under <dataDir>/<node id>', () => {
    const config = parseClusterConfig(minimalConfig(), BASE_DIR);
    expect(nodeDataDir(config, 'n2')).toBe('/etc/dlm/data/n2');
    expect(findNode(config, 'n3').clientAddress).toBe('127.0.0.1:7103');
  });

  it('an unknown node id is a ConfigError naming the known ids', () => {
    const config = parseClusterConfig(minimalConfig(), BASE_DIR);
    expect(() => nodeDataDir(config, 'n9')).toThrow(ConfigError);
    expect(() => nodeDataDir(config, 'n9')).toThrow('nodes: no node has id "n9" (ids: n1, n2, n3)');
  });
});

/** Each case breaks one thing and names one exact problem line. */
const ERROR_CASES: ReadonlyArray<readonly [string, Edit, string]> = [
  [
    'a tls section without its key',
    [['tls'], { caFile: 'ca.pem', certFile: 'node.pem' }],
    'tls.keyFile: missing required field',
  ],
  [
    'a misspelt tls field',
    [['tls'], { caFile: 'ca.pem', certFile: 'node.pem', keyFile: 'k.pem', keyfile: 'k.pem' }],
    'tls.keyfile: unknown field (did you mean keyFile?)',
  ],
  [
    'an address without a port',
    [['nodes', 1, 'clientAddress'], 'localhost'],
    'nodes[1].clientAddress: expected "host:port", got "localhost"',
  ],
  [
    'election timeout not above the heartbeat',
    [['raft'], { electionTimeoutTicks: 10, heartbeatIntervalTicks: 20 }],
    'raft.electionTimeoutTicks: must exceed raft.heartbeatIntervalTicks (10 <= 20)',
  ],
  [
    'a duplicate node id',
    [['nodes', 1, 'id'], 'n1'],
    'nodes: node ids must be unique ("n1" twice)',
  ],
  [
    'ids that differ only in case',
    [['nodes', 1, 'id'], 'N1'],
    'nodes: node ids must differ by more than case, as each names a directory ("n1" and "N1")',
  ],
  [
    'a port out of range',
    [['nodes', 0, 'peerAddress'], '127.0.0.1:70000'],
    'nodes[0].peerAddress: port 70000 out of range 1..65535',
  ],
  [
    'port 0',
    [['nodes', 0, 'peerAddress'], '127.0.0.1:0'],
    'nodes[0].peerAddress: port 0 out of range 1..65535',
  ],
  [
    'an invalid host',
    [['nodes', 2, 'metricsAddress'], '300.1.1.1:9103'],
    'nodes[2].metricsAddress: invalid host "300.1.1.1"',
  ],
  [
    'an unbracketed IPv6 address',
    [['nodes', 0, 'peerAddress'], '::1:7001'],
    'nodes[0].peerAddress: expected "host:port" (IPv6 hosts go in brackets), got "::1:7001"',
  ],
  [
    'a misspelt raft field',
    [['raft'], { electionTimeout: 10 }],
    'raft.electionTimeout: unknown field (did you mean electionTimeoutTicks?)',
  ],
  [
    'a misspelt node field',
    [['nodes', 2, 'peerAdress'], '127.0.0.1:7003'],
    'nodes[2].peerAdress: unknown field (did you mean peerAddress?)',
  ],
  [
    'a field in the wrong section',
    [['raft'], { snapshotEntriesThreshold: 10_000 }],
    'raft.snapshotEntriesThreshold: unknown field (it belongs in runtime.snapshotEntriesThreshold)',
  ],
  [
    'an unknown top-level field with an odd name',
    [['data dir'], 'x'],
    '["data dir"]: unknown field (did you mean dataDir?)',
  ],
  [
    'a string where a boolean belongs',
    [['raft'], { preVote: 'yes' }],
    'raft.preVote: expected a boolean, got "yes"',
  ],
  [
    'a fraction where an integer belongs',
    [['lock'], { locksMax: 1.5 }],
    'lock.locksMax: expected an integer, got 1.5',
  ],
  [
    'zero where a positive integer belongs',
    [['raft'], { inflightMessagesMax: 0 }],
    'raft.inflightMessagesMax: expected an integer in 1..9007199254740991, got 0',
  ],
  [
    'a stream with no room for waiting Acquires',
    [['runtime'], { sessionStreamWaitsInFlightMax: 0 }],
    'runtime.sessionStreamWaitsInFlightMax: expected an integer in 1..9007199254740991, got 0',
  ],
  [
    'a compaction slice that deletes nothing (the idle log would never be compacted)',
    [['runtime'], { compactionSliceEntries: 0 }],
    'runtime.compactionSliceEntries: expected an integer in 1..9007199254740991, got 0',
  ],
  [
    'a duration too long for a Node timer',
    [['runtime'], { proposalTimeoutMs: 2 ** 31 }],
    'runtime.proposalTimeoutMs: expected an integer in 1..2147483647, got 2147483648',
  ],
  [
    'a KeepAlive batch bound above its ceiling (its entry must reach the followers)',
    [['lock'], { keepAliveBatchMax: 10_001 }],
    'lock.keepAliveBatchMax: expected an integer in 1..10000, got 10001',
  ],
  [
    'an AcquireAll bound of 0 (optional rule, issue 17)',
    [['lock'], { locksPerAcquireMax: 0 }],
    'lock.locksPerAcquireMax: expected an integer in 1..256, got 0',
  ],
  [
    'an AcquireAll bound above its ceiling (a set is one log entry)',
    [['lock'], { locksPerAcquireMax: 257 }],
    'lock.locksPerAcquireMax: expected an integer in 1..256, got 257',
  ],
  [
    'a deadlock check budget that is not a number',
    [['lock'], { deadlockCheckStepsMax: '1000' }],
    'lock.deadlockCheckStepsMax: expected an integer, got "1000"',
  ],
  [
    'an election value bound above its ceiling (a value is kept in every snapshot)',
    [['lock'], { electionValueBytesMax: 65_537 }],
    'lock.electionValueBytesMax: expected an integer in 1..65536, got 65537',
  ],
  [
    'a semaphore limit bound of 0',
    [['lock'], { semaphoreLimitMax: 0 }],
    'lock.semaphoreLimitMax: expected an integer in 1..1000000000, got 0',
  ],
  [
    'an optional lock rule misspelt',
    [['lock'], { locksPerAcquireMx: 8 }],
    'lock.locksPerAcquireMx: unknown field (did you mean locksPerAcquireMax?)',
  ],
  [
    'an optional lock rule in the wrong section',
    [['runtime'], { deadlockCheckStepsMax: 8 }],
    'runtime.deadlockCheckStepsMax',
  ],
  [
    'a session TTL minimum above the maximum',
    [['lock'], { sessionTtlMsMin: 5_000, sessionTtlMsMax: 1_000 }],
    'lock.sessionTtlMsMin: must not exceed lock.sessionTtlMsMax (5000 > 1000)',
  ],
  [
    'a default lock-delay above its maximum',
    [['lock'], { lockDelayMs: 2_000, lockDelayMsMax: 1_000 }],
    'lock.lockDelayMs: must not exceed lock.lockDelayMsMax (2000 > 1000)',
  ],
  [
    'a reconnect backoff that shrinks',
    [['runtime'], { peerReconnectDelayMsMin: 5_000, peerReconnectDelayMsMax: 100 }],
    'runtime.peerReconnectDelayMsMin: must not exceed runtime.peerReconnectDelayMsMax (5000 > 100)',
  ],
  [
    'a section that is not an object',
    [['runtime'], []],
    'runtime: expected an object, got an array',
  ],
  [
    'a node id with a space',
    [['nodes', 0, 'id'], 'node one'],
    'nodes[0].id: expected an id matching /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, got "node one"',
  ],
  [
    'a node id starting with a dot',
    [['nodes', 0, 'id'], '.n1'],
    'nodes[0].id: expected an id matching',
  ],
  [
    'a node id of 64 characters',
    [['nodes', 0, 'id'], 'n'.repeat(64)],
    'nodes[0].id: expected an id matching',
  ],
  ['a node id that is a number', [['nodes', 0, 'id'], 1], 'nodes[0].id: expected a string, got 1'],
  [
    'a missing node address',
    [['nodes', 2, 'metricsAddress'], DELETE],
    'nodes[2].metricsAddress: missing required field',
  ],
  ['a node that is not an object', [['nodes', 1], 'n2'], 'nodes[1]: expected an object, got "n2"'],
  ['a missing nodes list', [['nodes'], DELETE], 'nodes: missing required field'],
  ['an empty nodes list', [['nodes'], []], 'nodes: expected at least one node'],
  [
    'nodes that are not a list',
    [['nodes'], { n1: {} }],
    'nodes: expected an array of nodes, got an object',
  ],
  ['a missing dataDir', [['dataDir'], DELETE], 'dataDir: missing required field'],
  ['an empty dataDir', [['dataDir'], ''], 'dataDir: expected a non-empty path, got ""'],
  ['a dataDir that is not a string', [['dataDir'], 5], 'dataDir: expected a string, got 5'],
];

describe('validation errors name the field', () => {
  it.each(ERROR_CASES)('%s', (_name, edit, expected) => {
    const problems = problemsOf(edited(edit));
    const found = problems.find((problem) => problem.startsWith(expected));
    expect(found, problems.join('\n')).toBeDefined();
  });

  it.each([
    [
      'the peer address of another node',
      [[['nodes', 1, 'clientAddress'], '127.0.0.1:7001']],
      'nodes[1].clientAddress: address 127.0.0.1:7001 is already used by nodes[0].peerAddress',
    ],
    [
      'an address of the same node',
      [[['nodes', 0, 'metricsAddress'], '127.0.0.1:7101']],
      'nodes[0].metricsAddress: address 127.0.0.1:7101 is already used by nodes[0].clientAddress',
    ],
    [
      'the same host in another case',
      [
        [['nodes', 0, 'peerAddress'], 'localhost:1'],
        [['nodes', 2, 'peerAddress'], 'LOCALHOST:1'],
      ],
      'nodes[2].peerAddress: address LOCALHOST:1 is already used by nodes[0].peerAddress',
    ],
  ] as const satisfies ReadonlyArray<readonly [string, readonly Edit[], string]>)(
    'an address used twice: %s',
    (_name, edits, expected) => {
      expect(problemsOf(edited(...edits))).toEqual([expected]);
    },
  );

  it('a document that is not an object is refused', () => {
    expect(problemsOf([])).toEqual(['(root): expected an object, got an array']);
    expect(problemsOf(null)).toEqual(['(root): expected an object, got null']);
  });

  it('one ConfigError lists every problem, and its message shows them all', () => {
    const input = edited(
      [['nodes', 0, 'clientAddress'], 'localhost'],
      [['raft'], { heartbeatIntervalTicks: 20 }],
      [['runtime'], { pendingProposalsMax: -1 }],
    );
    let caught: unknown;
    try {
      parseClusterConfig(input, BASE_DIR);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.problems).toHaveLength(3);
    for (const problem of error.problems) expect(error.message).toContain(problem);
    expect(error.message).toMatch(/^invalid cluster config \(3 problems\):/);
  });

  it('a message shows the first 50 problems and counts the rest; problems keeps them all', () => {
    const junk = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`junk${i}`, i]));
    const problems = problemsOf({ ...minimalConfig(), ...junk });
    expect(problems).toHaveLength(60);
    const message = new ConfigError(problems).message;
    expect(message).toContain('junk49: unknown field');
    expect(message).not.toContain('junk50');
    expect(message).toMatch(/… and 10 more$/);
  });

  it('a cross-field check is skipped when one of its fields is itself invalid', () => {
    const input = {
      ...minimalConfig(),
      raft: { electionTimeoutTicks: 'ten', heartbeatIntervalTicks: 20 },
    };
    expect(problemsOf(input)).toEqual([
      'raft.electionTimeoutTicks: expected an integer, got "ten"',
    ]);
  });
});

describe('clusterId', () => {
  it('is optional: null when absent', () => {
    expect(parseClusterConfig(minimalConfig(), BASE_DIR).clusterId).toBeNull();
  });

  it('is kept when given', () => {
    const config = parseClusterConfig({ ...minimalConfig(), clusterId: 'prod-eu-1' }, BASE_DIR);
    expect(config.clusterId).toBe('prod-eu-1');
  });

  it.each([
    ['', '""'],
    ['has space', '"has space"'],
    [42, '42'],
  ])('refuses %j, naming the field', (value, shown) => {
    expect(problemsOf({ ...minimalConfig(), clusterId: value })).toEqual([
      `clusterId: expected an id matching /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, got ${shown}`,
    ]);
  });
});

describe('peerTransport', () => {
  it('is tcp when absent; grpc when asked', () => {
    const tcp = parseClusterConfig(minimalConfig(), BASE_DIR);
    expect(tcp.peerTransport).toBe('tcp');
    expect(tcp.runtime.peerFrameBytesMax).toBe(16 * 1024 * 1024);
    const grpc = parseClusterConfig({ ...minimalConfig(), peerTransport: 'grpc' }, BASE_DIR);
    expect(grpc.peerTransport).toBe('grpc');
  });

  it.each([
    ['TCP', '"TCP"'],
    ['http2', '"http2"'],
    [true, 'true'],
  ])('refuses %j, naming the field and the choices', (value, shown) => {
    expect(problemsOf({ ...minimalConfig(), peerTransport: value })).toEqual([
      `peerTransport: expected "grpc" or "tcp", got ${shown}`,
    ]);
  });

  it('refuses a frame bound the 32-bit frame header cannot carry', () => {
    const config = { ...minimalConfig(), runtime: { peerFrameBytesMax: 2 ** 32 } };
    expect(problemsOf(config)).toEqual([
      'runtime.peerFrameBytesMax: expected an integer in 1..4294967295, got 4294967296',
    ]);
  });

  it('refuses a frame bound below one snapshot chunk plus its headroom, naming both', () => {
    const chunkBytes = 100_000;
    const atMin = {
      ...minimalConfig(),
      peerTransport: 'tcp',
      raft: { snapshotChunkBytesMax: chunkBytes },
      runtime: { peerFrameBytesMax: chunkBytes + PEER_FRAME_HEADROOM_BYTES },
    };
    expect(parseClusterConfig(atMin, BASE_DIR).runtime.peerFrameBytesMax).toBe(165_536);
    const below = {
      ...atMin,
      runtime: { peerFrameBytesMax: chunkBytes + PEER_FRAME_HEADROOM_BYTES - 1 },
    };
    const problems = problemsOf(below);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^runtime\.peerFrameBytesMax: 165535 bytes .*raft\.snapshotChunkBytesMax .* = 165536 bytes is the minimum/,
    );
  });

  it('refuses fewer inbound peer connections than two per node', () => {
    const config = {
      ...minimalConfig(),
      peerTransport: 'tcp',
      runtime: { peerInboundConnectionsMax: 1 },
    };
    const nodes = minimalConfig().nodes.length;
    expect(problemsOf(config)).toEqual([
      `runtime.peerInboundConnectionsMax: 1 is less than 2 × the ${nodes} nodes = ${2 * nodes}: each peer holds one connection, two while it reconnects`,
    ]);
  });
});

describe('Raft timing against the lock section', () => {
  /**
   * Combinations that cannot work: each is refused with the field, the reason and the
   * minimums derived from the Raft timing, and nothing else is reported.
   */
  it('a session TTL below a keepalive round and below a failover (tick 1000 ms, TTL 1 ms)', () => {
    const problems = problemsOf(
      edited([['raft'], { tickIntervalMs: 1_000 }], [['lock'], { sessionTtlMsMin: 1 }]),
    );
    expect(problems).toEqual([
      'lock.sessionTtlMsMin: 1 ms cannot survive a keepalive round: clients keep a session alive every TTL / 3, and one keepalive needs at least raft.heartbeatIntervalTicks × raft.tickIntervalMs + raft.tickIntervalMs = 1 × 1000 + 1000 = 2000 ms to commit and reach the expiry timers, so the minimum is 3 × 2000 = 6000 ms',
      'lock.sessionTtlMsMin: 1 ms cannot survive a failover: followers wait raft.electionTimeoutTicks × raft.tickIntervalMs = 10 × 1000 = 10000 ms without a leader before they elect a new one, so every session shorter than that expires at every failover; the minimum is 10000 ms',
    ]);
  });

  it('a session TTL below a keepalive round only', () => {
    const problems = problemsOf(
      edited(
        [['raft'], { tickIntervalMs: 100, electionTimeoutTicks: 5, heartbeatIntervalTicks: 1 }],
        [['lock'], { sessionTtlMsMin: 550 }],
      ),
    );
    expect(problems).toEqual([
      'lock.sessionTtlMsMin: 550 ms cannot survive a keepalive round: clients keep a session alive every TTL / 3, and one keepalive needs at least raft.heartbeatIntervalTicks × raft.tickIntervalMs + raft.tickIntervalMs = 1 × 100 + 100 = 200 ms to commit and reach the expiry timers, so the minimum is 3 × 200 = 600 ms',
    ]);
  });

  it('a session TTL below the election timeout only', () => {
    const problems = problemsOf(edited([['lock'], { sessionTtlMsMin: 900 }]));
    expect(problems).toEqual([
      'lock.sessionTtlMsMin: 900 ms cannot survive a failover: followers wait raft.electionTimeoutTicks × raft.tickIntervalMs = 10 × 100 = 1000 ms without a leader before they elect a new one, so every session shorter than that expires at every failover; the minimum is 1000 ms',
    ]);
  });

  it('a heartbeat of 9 ticks against an election timeout of 10', () => {
    const problems = problemsOf(
      edited([['raft'], { electionTimeoutTicks: 10, heartbeatIntervalTicks: 9 }]),
    );
    expect(problems).toEqual([
      'raft.electionTimeoutTicks: 10 ticks is less than 5 × raft.heartbeatIntervalTicks = 5 × 9 = 45 ticks: a follower would start an election after one or two late heartbeats (spurious elections); raise it to at least 45 or lower the heartbeat',
    ]);
  });

  it('the smallest accepted values pass: TTL = election timeout, election timeout = 5 heartbeats', () => {
    const input = edited(
      [['raft'], { tickIntervalMs: 100, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 }],
      [['lock'], { sessionTtlMsMin: 1_000 }],
    );
    expect(() => parseClusterConfig(input, BASE_DIR)).not.toThrow();
  });
});

describe('closest-name suggestions', () => {
  it.each([
    ['electionTimeout', 'electionTimeoutTicks'],
    ['heartbeatIntervalticks', 'heartbeatIntervalTicks'],
    ['prevote', 'preVote'],
    ['lockDelay', 'lockDelayMs'],
  ])('%s suggests %s', (typo, expected) => {
    const known = [...Object.keys(DEFAULT_RAFT_OPTIONS), ...Object.keys(DEFAULT_LOCK_LIMITS)];
    expect(closestName(typo, known)).toBe(expected);
  });

  it('an unrelated name suggests nothing', () => {
    expect(closestName('zzz', Object.keys(DEFAULT_RAFT_OPTIONS))).toBeUndefined();
    expect(problemsOf({ ...minimalConfig(), raft: { zzz: 1 } })).toEqual([
      'raft.zzz: unknown field',
    ]);
  });
});

describe('loadClusterConfig', () => {
  let folder = '';

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'dlm-config-test-'));
  });

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  async function write(name: string, text: string): Promise<string> {
    const path = join(folder, name);
    await writeFile(path, text);
    return path;
  }

  async function loadError(path: string): Promise<ConfigError> {
    const error: unknown = await loadClusterConfig(path).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }

  it("loads the repository's cluster.config.json", async () => {
    const path = fileURLToPath(new URL('../../cluster.config.json', import.meta.url));
    const config = await loadClusterConfig(path);
    expect(config.nodes.map((node) => node.id)).toEqual(['n1', 'n2', 'n3']);
    expect(config.nodes.every((node) => node.peerAddress.startsWith('127.0.0.1:'))).toBe(true);
    expect(config.dataDir).toBe(fileURLToPath(new URL('../../data', import.meta.url)));
  });

  it('resolves a relative dataDir against the file folder, not the working directory', async () => {
    const path = await write('relative.json', JSON.stringify(minimalConfig()));
    const config = await loadClusterConfig(path);
    expect(config.dataDir).toBe(join(folder, 'data'));
    expect(nodeDataDir(config, 'n1')).toBe(join(folder, 'data', 'n1'));
  });

  it('accepts a file that starts with a byte order mark', async () => {
    const path = await write('bom.json', `\uFEFF${JSON.stringify(minimalConfig())}`);
    await expect(loadClusterConfig(path)).resolves.toBeDefined();
  });

  it('a missing file names the path', async () => {
    const path = join(folder, 'missing.json');
    const error = await loadError(path);
    expect(error.problems[0]?.startsWith(`${path}: cannot read: ENOENT`)).toBe(true);
    expect(error.source).toBe(path);
  });

  it('a folder instead of a file names the path', async () => {
    const error = await loadError(folder);
    expect(error.problems[0]).toContain(`${folder}: cannot read:`);
  });

  it.each([
    ['a missing comma', '{\n  "nodes": []\n  "dataDir": "x"\n}', 3, 3, "expected ',' or '}'"],
    ['a bare word', '{\n  "dataDir": data\n}', 2, 14, 'unexpected "d"'],
    ['a trailing comma', '{"nodes": [1, 2,]}', 1, 17, 'unexpected "]"'],
    ['an unterminated object', '{"nodes": [', 1, 12, 'unexpected end of input'],
    ['an empty file', '', 1, 1, 'unexpected end of input'],
    ['a leading zero', '{"a": 01}', 1, 8, 'invalid number'],
  ])(
    'invalid JSON (%s) names the file, line and column',
    async (_name, text, line, column, reason) => {
      const path = await write('bad.json', text);
      const error = await loadError(path);
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toContain(`${path}:${line}:${column}: invalid JSON: ${reason}`);
    },
  );

  it('a validation error from a file names the file and the field', async () => {
    const input = edited([['nodes', 1, 'clientAddress'], 'localhost']);
    const path = await write('invalid.json', JSON.stringify(input));
    const error = await loadError(path);
    expect(error.message).toContain(`invalid cluster config ${path}`);
    expect(error.problems).toEqual([
      'nodes[1].clientAddress: expected "host:port", got "localhost"',
    ]);
  });
});

/** Only arrays and plain objects are walked into: a boxed String's characters are read-only. */
function isPlainObject(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function allPaths(value: unknown, prefix: JsonPath = []): JsonPath[] {
  const children: [string | number, unknown][] = Array.isArray(value)
    ? Array.from({ length: value.length }, (_, i) => [i, value[i]]) // map would honour an own `constructor`
    : isPlainObject(value)
      ? Object.entries(value)
      : [];
  return [prefix, ...children.flatMap(([key, item]) => allPaths(item, [...prefix, key]))];
}

type Mutation =
  | { readonly kind: 'delete'; readonly pick: number }
  | { readonly kind: 'replace'; readonly pick: number; readonly value: unknown }
  | { readonly kind: 'add'; readonly pick: number; readonly key: string; readonly value: unknown };

/** Applies a mutation to a copy; replacing the root path replaces the whole document. */
function mutate(document: unknown, mutation: Mutation): unknown {
  const copy = structuredClone(document);
  const paths = allPaths(copy);
  const path = paths[mutation.pick % paths.length] ?? [];
  if (mutation.kind === 'add') return addField(copy, path, mutation.key, mutation.value);
  const value = mutation.kind === 'delete' ? DELETE : mutation.value;
  if (path.length === 0) return value === DELETE ? copy : value;
  setAt(copy, path, value);
  return copy;
}

/** Adds a field to the object at `path`; anything else is left as it is. */
function addField(document: unknown, path: JsonPath, key: string, value: unknown): unknown {
  let target = document as Record<string | number, unknown>;
  for (const step of path) target = target[step] as Record<string | number, unknown>;
  if (Array.isArray(target) || isPlainObject(target)) target[key] = value;
  return document;
}

const anyValue = fc.oneof(
  fc.jsonValue(),
  fc.anything({ withBigInt: true, withBoxedValues: true, withNullPrototype: true, withMap: true }),
  fc.constantFrom(
    0,
    -1,
    1.5,
    2 ** 31,
    1e300,
    Number.NaN,
    '',
    'localhost',
    '127.0.0.1:1',
    'n1',
    null,
  ),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: anyValue }),
  fc.record({
    kind: fc.constant('add' as const),
    pick: fc.nat(),
    key: fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'tickIntervalMs', 'id')),
    value: anyValue,
  }),
);

function fieldsOf(section: object): Readonly<Record<string, unknown>> {
  return section as Record<string, unknown>;
}

function expectDeletionOutcome(path: JsonPath, input: unknown, defaults: ClusterFileConfig): void {
  const [section, key] = path;
  if (section === 'raft' || section === 'lock' || section === 'runtime') {
    const parsed = fieldsOf(parseClusterConfig(input, BASE_DIR)[section]);
    const expected = fieldsOf(defaults[section]);
    if (typeof key === 'string') expect(parsed[key], path.join('.')).toBe(expected[key]);
    else expect(parsed, path.join('.')).toEqual(expected);
  } else if (section === 'nodes' && path.length === 2) {
    // A whole node removed leaves a smaller, still valid, cluster.
    expect(parseClusterConfig(input, BASE_DIR).nodes, path.join('.')).toHaveLength(2);
  } else {
    expect(() => parseClusterConfig(input, BASE_DIR), path.join('.')).toThrow(ConfigError);
  }
}

/** A config with every section present, so mutations reach every field. */
function fullConfig(): unknown {
  return {
    ...minimalConfig(),
    raft: { ...DEFAULT_RAFT_OPTIONS, tickIntervalMs: 50 },
    lock: DEFAULT_LOCK_LIMITS,
    runtime: DEFAULT_RUNTIME_CONFIG,
  };
}

describe('properties', () => {
  it('any mutation of a valid config parses or throws a ConfigError, never anything else', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        const input = mutations.reduce<unknown>(mutate, fullConfig());
        try {
          const config = parseClusterConfig(input, BASE_DIR);
          expect(Object.isFrozen(config)).toBe(true);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          expect(error.problems.length).toBeGreaterThan(0);
        }
      }),
    );
  });

  it('deleting any one field: a section field falls back to its default, a required one is refused', () => {
    const document = fullConfig();
    const defaults = parseClusterConfig(minimalConfig(), BASE_DIR);
    const paths = allPaths(document);
    // Path 0 is the whole document; every other one is a field or an array element.
    for (let pick = 1; pick < paths.length; pick++) {
      const mutated = mutate(document, { kind: 'delete', pick });
      expectDeletionOutcome(paths[pick] ?? [], mutated, defaults);
    }
    expect(paths.length).toBeGreaterThan(50);
  });

  it('the JSON error locator agrees with JSON.parse, and points inside the text', () => {
    const nearlyJson = fc
      .tuple(fc.json(), fc.nat(), fc.constantFrom('', ',', '}', ']', '"', '-', '0', 'x', ' ', '\n'))
      .map(([text, at, insert]) => {
        const cut = at % (text.length + 1);
        return text.slice(0, cut) + insert + text.slice(cut + (at % 2));
      });
    fc.assert(
      fc.property(fc.oneof(nearlyJson, fc.json(), fc.string()), (text) => {
        let parses = true;
        try {
          JSON.parse(text);
        } catch {
          parses = false;
        }
        const found = findJsonSyntaxError(text);
        expect(found === undefined).toBe(parses);
        if (found !== undefined) expect(found.offset).toBeLessThanOrEqual(text.length);
      }),
      { numRuns: 500 },
    );
  });
});

describe('listen addresses (peerListenAddress, clientListenAddress)', () => {
  it('default to the advertised addresses', () => {
    const config = parseClusterConfig(minimalConfig(), BASE_DIR);
    for (const node of config.nodes) {
      expect(node.peerListenAddress).toBe(node.peerAddress);
      expect(node.clientListenAddress).toBe(node.clientAddress);
    }
  });

  it('are kept as given, and may be the same on every node (each node binds its own host)', () => {
    const input = edited(
      ...[0, 1, 2].flatMap((i): Edit[] => [
        [['nodes', i, 'peerListenAddress'], '0.0.0.0:7000'],
        [['nodes', i, 'clientListenAddress'], '[::]:7100'],
      ]),
    );
    const config = parseClusterConfig(input, BASE_DIR);
    expect(config.nodes.map((node) => node.peerListenAddress)).toEqual(
      Array(3).fill('0.0.0.0:7000'),
    );
    expect(config.nodes.map((node) => node.clientListenAddress)).toEqual(
      Array(3).fill('[::]:7100'),
    );
    // What the others dial is unchanged.
    expect(config.nodes[1]?.peerAddress).toBe('127.0.0.1:7002');
    expect(config.nodes[1]?.clientAddress).toBe('127.0.0.1:7102');
  });

  it.each([
    [
      'not host:port',
      [[['nodes', 1, 'peerListenAddress'], '0.0.0.0']],
      'nodes[1].peerListenAddress: expected "host:port", got "0.0.0.0"',
    ],
    [
      'not a string',
      [[['nodes', 2, 'clientListenAddress'], 7100]],
      'nodes[2].clientListenAddress: expected a string, got 7100',
    ],
    [
      'port 0',
      [[['nodes', 0, 'clientListenAddress'], '127.0.0.1:0']],
      'nodes[0].clientListenAddress: port 0 out of range 1..65535',
    ],
    [
      'the same port as the node binds for its client API',
      [[['nodes', 0, 'peerListenAddress'], '127.0.0.1:7101']],
      'nodes[0].peerListenAddress: 127.0.0.1:7101 and clientAddress 127.0.0.1:7101 would both bind port 7101 on this node',
    ],
    [
      'a wildcard on a port the node binds elsewhere',
      [[['nodes', 2, 'clientListenAddress'], '0.0.0.0:9103']],
      'nodes[2].clientListenAddress: 0.0.0.0:9103 and metricsAddress 127.0.0.1:9103 would both bind port 9103 on this node',
    ],
    [
      'both listen addresses on one port',
      [
        [['nodes', 1, 'peerListenAddress'], '0.0.0.0:8000'],
        [['nodes', 1, 'clientListenAddress'], '10.0.0.1:8000'],
      ],
      'nodes[1].clientListenAddress: 10.0.0.1:8000 and peerListenAddress 0.0.0.0:8000 would both bind port 8000 on this node',
    ],
    [
      'a misspelt field name',
      [[['nodes', 0, 'peerListenAdress'], '0.0.0.0:7000']],
      'nodes[0].peerListenAdress: unknown field',
    ],
  ] as const satisfies ReadonlyArray<readonly [string, readonly Edit[], string]>)(
    'a listen address that is refused: %s',
    (_name, edits, expected) => {
      const problems = problemsOf(edited(...edits));
      expect(problems, problems.join('\n')).toHaveLength(1);
      expect(problems[0]?.startsWith(expected), problems[0]).toBe(true);
    },
  );

  it('the same port on another host of the node is fine', () => {
    const input = edited([['nodes', 0, 'peerListenAddress'], '10.0.0.1:7101']);
    expect(parseClusterConfig(input, BASE_DIR).nodes[0]?.peerListenAddress).toBe('10.0.0.1:7101');
  });
});

describe('runtime.restoreCollectBytesMin (review of 546167a; 0 turns it off)', () => {
  const parse = (runtime: Record<string, unknown>) =>
    parseClusterConfig({ ...minimalConfig(), runtime }, BASE_DIR);

  it('defaults to 4 MiB', () => {
    expect(parse({}).runtime.restoreCollectBytesMin).toBe(4 * 2 ** 20);
  });
  it('accepts 0 (off), 1 and MAX_SAFE_INTEGER', () => {
    for (const good of [0, 1, Number.MAX_SAFE_INTEGER])
      expect(parse({ restoreCollectBytesMin: good }).runtime.restoreCollectBytesMin).toBe(good);
  });
  it('rejects -1, 1.5, a string, null, naming the field', () => {
    for (const bad of [-1, 1.5, '4MiB', null])
      expect(() => parse({ restoreCollectBytesMin: bad }), String(bad)).toThrow(
        /restoreCollectBytesMin/,
      );
  });
});

describe('runtime.stallReportMsMin (the pauses a node logs one by one)', () => {
  const parse = (runtime: Record<string, unknown>) =>
    parseClusterConfig({ ...minimalConfig(), runtime }, BASE_DIR);

  it('defaults to 50 ms', () => {
    expect(parse({}).runtime.stallReportMsMin).toBe(50);
  });
  it('accepts 1', () => {
    expect(parse({ stallReportMsMin: 1 }).runtime.stallReportMsMin).toBe(1);
  });
  it('rejects 0 (every check would log), -1, 2.5 and a string, naming the field', () => {
    for (const bad of [0, -1, 2.5, '50ms'])
      expect(() => parse({ stallReportMsMin: bad }), String(bad)).toThrow(/stallReportMsMin/);
  });
});

describe('runtime.heapTargetMb', () => {
  it('is 128 by default, and 0 (off) or up to 65536 when set', () => {
    expect(parseClusterConfig(minimalConfig(), BASE_DIR).runtime.heapTargetMb).toBe(128);
    for (const heapTargetMb of [0, 512, 65_536]) {
      const set = { ...minimalConfig(), runtime: { heapTargetMb } };
      expect(parseClusterConfig(set, BASE_DIR).runtime.heapTargetMb).toBe(heapTargetMb);
    }
  });

  it.each([
    [65_537, 'expected an integer in 0..65536, got 65537'],
    [-1, 'expected an integer in 0..65536, got -1'],
  ])('refuses %j, naming the field', (value, message) => {
    expect(problemsOf({ ...minimalConfig(), runtime: { heapTargetMb: value } })).toEqual([
      `runtime.heapTargetMb: ${message}`,
    ]);
  });
});

describe('runtime.heapGrowingPercent', () => {
  it('is off (0, V8 chooses) by default and takes up to 1000', () => {
    expect(parseClusterConfig(minimalConfig(), BASE_DIR).runtime.heapGrowingPercent).toBe(0);
    const set = { ...minimalConfig(), runtime: { heapGrowingPercent: 1_000 } };
    expect(parseClusterConfig(set, BASE_DIR).runtime.heapGrowingPercent).toBe(1_000);
  });

  it.each([
    [1_001, 'expected an integer in 0..1000, got 1001'],
    [-1, 'expected an integer in 0..1000, got -1'],
    [12.5, 'expected an integer, got 12.5'],
  ])('refuses %j, naming the field', (value, message) => {
    expect(problemsOf({ ...minimalConfig(), runtime: { heapGrowingPercent: value } })).toEqual([
      `runtime.heapGrowingPercent: ${message}`,
    ]);
  });
});
