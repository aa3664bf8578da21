import { join, resolve } from 'node:path';
import { readAuthSection } from './auth.ts';
import { ConfigError } from './errors.ts';
import {
  describeValue,
  ownField,
  Problems,
  ROOT_PATH,
  readObject,
  readString,
  rejectUnknownFields,
} from './fields.ts';
import { readNodes } from './nodes.ts';
import { checkMessageLimits, checkPeerLimits } from './peer-limits.ts';
import {
  fieldHomes,
  readLockSection,
  readRaftSection,
  readRuntimeSection,
  SECTION_NAMES,
} from './sections.ts';
import { checkTiming } from './timing.ts';
import { readTlsSection } from './tls.ts';
import { readTracingSection } from './tracing.ts';
import {
  type ClusterFileConfig,
  DEFAULT_PEER_TRANSPORT,
  type NodeConfig,
  PEER_TRANSPORT_KINDS,
  type PeerTransportKind,
} from './types.ts';

const TOP_FIELDS: readonly string[] = [
  'clusterId',
  'nodes',
  'dataDir',
  'tls',
  'auth',
  'peerTransport',
  'tracing',
  ...SECTION_NAMES,
];

/** Like node ids: it goes into logs, metrics and error messages, so it stays plain. */
export const CLUSTER_ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/**
 * Validates a parsed cluster.config.json and fills in every default. Throws one
 * ConfigError listing every problem found. A relative `dataDir` is resolved against
 * `baseDir`, the folder of the config file, so the cluster finds its data whatever
 * directory it is started from.
 */
export function parseClusterConfig(json: unknown, baseDir: string): ClusterFileConfig {
  const problems = new Problems();
  const root = readObject(problems, ROOT_PATH, json);
  if (root === undefined) throw new ConfigError(problems.list);
  rejectUnknownFields(problems, '', root, TOP_FIELDS, fieldHomes());
  const nodes = Object.freeze(readNodes(problems, ownField(root, 'nodes')));
  const dataDir = readDataDir(problems, ownField(root, 'dataDir'), baseDir);
  const problemsBeforeTiming = problems.list.length;
  const raft = readRaftSection(problems, ownField(root, 'raft'));
  const raftValid = problems.list.length === problemsBeforeTiming;
  const lock = readLockSection(problems, ownField(root, 'lock'));
  // Across sections, and only once both are valid: defaults standing in for a refused
  // field would show misleading minimums.
  if (problems.list.length === problemsBeforeTiming) checkTiming(problems, raft, lock);
  const problemsBeforeRuntime = problems.list.length;
  const runtime = readRuntimeSection(problems, ownField(root, 'runtime'));
  const peerTransport = readPeerTransport(problems, ownField(root, 'peerTransport'));
  // The limits of the TCP transport's own (the gRPC one ignores them), and the message sizes.
  if (raftValid && problems.list.length === problemsBeforeRuntime) {
    checkMessageLimits(problems, raft, runtime);
    if (peerTransport === 'tcp') checkPeerLimits(problems, raft, runtime, nodes.length);
  }
  const config: ClusterFileConfig = {
    clusterId: readClusterId(problems, ownField(root, 'clusterId')),
    nodes,
    dataDir,
    raft,
    lock,
    runtime,
    tls: readTlsSection(problems, ownField(root, 'tls'), baseDir),
    auth: readAuthSection(problems, ownField(root, 'auth')),
    peerTransport,
    tracing: readTracingSection(problems, ownField(root, 'tracing')),
  };
  if (problems.list.length > 0) throw new ConfigError(problems.list);
  return Object.freeze(config);
}

function readClusterId(problems: Problems, value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value === 'string' && CLUSTER_ID_PATTERN.test(value)) return value;
  problems.add(
    'clusterId',
    `expected an id matching ${CLUSTER_ID_PATTERN}, got ${describeValue(value)}`,
  );
  return null;
}

function readPeerTransport(problems: Problems, value: unknown): PeerTransportKind {
  if (value === undefined) return DEFAULT_PEER_TRANSPORT;
  const kind = PEER_TRANSPORT_KINDS.find((known) => known === value);
  if (kind !== undefined) return kind;
  const expected = PEER_TRANSPORT_KINDS.map((known) => JSON.stringify(known)).join(' or ');
  problems.add('peerTransport', `expected ${expected}, got ${describeValue(value)}`);
  return DEFAULT_PEER_TRANSPORT;
}

function readDataDir(problems: Problems, value: unknown, baseDir: string): string {
  const text = readString(problems, 'dataDir', value);
  // The file system rejects NUL, and an empty path would quietly mean the config's folder.
  if (text === '' || text?.includes('\0')) {
    problems.add('dataDir', `expected a non-empty path, got ${describeValue(text)}`);
    return '';
  }
  return text === undefined ? '' : resolve(baseDir, text);
}

/** The node with this id; an unknown id (a typo in `--node`) is a ConfigError. */
export function findNode(config: ClusterFileConfig, id: string): NodeConfig {
  const node = config.nodes.find((candidate) => candidate.id === id);
  if (node !== undefined) return node;
  const ids = config.nodes.map((candidate) => candidate.id).join(', ');
  throw new ConfigError([`nodes: no node has id ${describeValue(id)} (ids: ${ids})`]);
}

/** Each node keeps its data in its own folder, so several nodes can share one dataDir. */
export function nodeDataDir(config: ClusterFileConfig, id: string): string {
  return join(config.dataDir, findNode(config, id).id);
}
