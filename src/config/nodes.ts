import { addressKey, type HostPort, parseAddress } from './address.ts';
import {
  describeValue,
  fieldPath,
  isJsonObject,
  ownField,
  type Problems,
  readString,
  rejectUnknownFields,
} from './fields.ts';
import type { NodeConfig } from './types.ts';

/** Ids name data directories and appear in logs and metrics labels, so they stay plain. */
export const NODE_ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
/** Room for learners too: far more members than a cluster should have voting. */
export const NODES_MAX = 32;

/** The addresses others use to reach a node: each must be unique across the cluster. */
const ADDRESS_FIELDS = ['peerAddress', 'clientAddress', 'metricsAddress'] as const;
type AddressField = (typeof ADDRESS_FIELDS)[number];
/** Where a node binds instead of its advertised address; optional, read only by the node itself. */
const LISTEN_FIELDS = ['peerListenAddress', 'clientListenAddress'] as const;
const NODE_FIELDS: readonly string[] = ['id', ...ADDRESS_FIELDS, ...LISTEN_FIELDS];

/** A node's fields that passed their own checks; the cross-node checks look only at those. */
interface NodeFields {
  readonly path: string;
  id?: string;
  peerAddress?: string;
  clientAddress?: string;
  metricsAddress?: string;
  peerListenAddress?: string;
  clientListenAddress?: string;
}

export function readNodes(problems: Problems, value: unknown): NodeConfig[] {
  if (value === undefined) return requiredNodesMissing(problems);
  if (!Array.isArray(value)) {
    problems.add('nodes', `expected an array of nodes, got ${describeValue(value)}`);
    return [];
  }
  if (value.length === 0) problems.add('nodes', 'expected at least one node');
  if (value.length > NODES_MAX) {
    problems.add('nodes', `at most ${NODES_MAX} nodes, got ${value.length}`);
  }
  const fields: NodeFields[] = [];
  // An index loop, not map: map would honour a hostile own `constructor` on the array.
  for (let i = 0; i < value.length; i++) fields.push(readNode(problems, `nodes[${i}]`, value[i]));
  checkIdsUnique(problems, fields);
  checkAddressesUnique(problems, fields);
  for (const node of fields) checkBindsDistinct(problems, node);
  return fields.flatMap((node) => {
    const config = toNodeConfig(node);
    return config === undefined ? [] : [config];
  });
}

function requiredNodesMissing(problems: Problems): NodeConfig[] {
  problems.add('nodes', 'missing required field');
  return [];
}

function toNodeConfig(fields: NodeFields): NodeConfig | undefined {
  const { id, peerAddress, clientAddress, metricsAddress } = fields;
  if (id === undefined || peerAddress === undefined) return undefined;
  if (clientAddress === undefined || metricsAddress === undefined) return undefined;
  return Object.freeze({
    id,
    peerAddress,
    clientAddress,
    metricsAddress,
    peerListenAddress: fields.peerListenAddress ?? peerAddress,
    clientListenAddress: fields.clientListenAddress ?? clientAddress,
  });
}

function readNode(problems: Problems, path: string, value: unknown): NodeFields {
  const fields: NodeFields = { path };
  if (!isJsonObject(value)) {
    problems.add(path, `expected an object, got ${describeValue(value)}`);
    return fields;
  }
  rejectUnknownFields(problems, path, value, NODE_FIELDS);
  const id = readString(problems, `${path}.id`, ownField(value, 'id'));
  if (id !== undefined && NODE_ID_PATTERN.test(id)) fields.id = id;
  else if (id !== undefined) {
    problems.add(
      `${path}.id`,
      `expected an id matching ${NODE_ID_PATTERN}, got ${describeValue(id)}`,
    );
  }
  for (const field of ADDRESS_FIELDS) {
    const address = readAddress(problems, fieldPath(path, field), ownField(value, field));
    if (address !== undefined) fields[field] = address;
  }
  for (const field of LISTEN_FIELDS) {
    const given = ownField(value, field);
    if (given === undefined) continue;
    const address = readAddress(problems, fieldPath(path, field), given);
    if (address !== undefined) fields[field] = address;
  }
  return fields;
}

function readAddress(problems: Problems, path: string, value: unknown): string | undefined {
  const text = readString(problems, path, value);
  if (text === undefined) return undefined;
  const parsed = parseAddress(text);
  if (parsed.ok) return text;
  problems.add(path, parsed.problem);
  return undefined;
}

function checkIdsUnique(problems: Problems, nodes: readonly NodeFields[]): void {
  const counts = new Map<string, number>();
  for (const { id } of nodes) if (id !== undefined) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, count] of counts) {
    if (count > 1) problems.add('nodes', `node ids must be unique (${timesText(id, count)})`);
  }
  checkIdsDifferBeyondCase(problems, [...counts.keys()]);
}

function timesText(id: string, count: number): string {
  return `${JSON.stringify(id)} ${count === 2 ? 'twice' : `${count} times`}`;
}

/** Ids name directories, and on macOS and Windows "n1" and "N1" are the same directory. */
function checkIdsDifferBeyondCase(problems: Problems, ids: readonly string[]): void {
  const byLowerCase = new Map<string, string>();
  for (const id of ids) {
    const other = byLowerCase.get(id.toLowerCase());
    if (other === undefined) byLowerCase.set(id.toLowerCase(), id);
    else {
      const pair = `${JSON.stringify(other)} and ${JSON.stringify(id)}`;
      problems.add(
        'nodes',
        `node ids must differ by more than case, as each names a directory (${pair})`,
      );
    }
  }
}

/** Every node may share one host, so each host:port must be used once across all fields. */
function checkAddressesUnique(problems: Problems, nodes: readonly NodeFields[]): void {
  const firstUse = new Map<string, string>();
  for (const node of nodes) {
    for (const field of ADDRESS_FIELDS) checkAddressUnused(problems, firstUse, node, field);
  }
}

function checkAddressUnused(
  problems: Problems,
  firstUse: Map<string, string>,
  node: NodeFields,
  field: AddressField,
): void {
  const text = node[field];
  const parsed = text === undefined ? undefined : parseAddress(text);
  if (parsed === undefined || !parsed.ok) return;
  const key = addressKey(parsed.address);
  const path = fieldPath(node.path, field);
  const previous = firstUse.get(key);
  if (previous === undefined) firstUse.set(key, path);
  else problems.add(path, `address ${text} is already used by ${previous}`);
}

/**
 * The addresses one process binds (peer, client, metrics) must not take the same port
 * twice. Listen addresses are not compared across nodes: each node binds on its own
 * host, and nodes in containers commonly all listen on 0.0.0.0 with the same port.
 * A wildcard host (0.0.0.0, [::]) takes the port on every local address, so it clashes
 * with any other bind of that port.
 */
function checkBindsDistinct(problems: Problems, node: NodeFields): void {
  const binds: Bind[] = [];
  for (const [listenField, advertisedField] of [
    ['peerListenAddress', 'peerAddress'],
    ['clientListenAddress', 'clientAddress'],
  ] as const) {
    const listen = node[listenField];
    if (listen !== undefined) binds.push({ field: listenField, text: listen, listen: true });
    else binds.push({ field: advertisedField, text: node[advertisedField], listen: false });
  }
  binds.push({ field: 'metricsAddress', text: node.metricsAddress, listen: false });
  const seen: (Bind & HostPort)[] = [];
  for (const bind of binds) {
    const parsed = bind.text === undefined ? undefined : parseAddress(bind.text);
    if (parsed === undefined || !parsed.ok) continue;
    const { host, port } = parsed.address;
    const sameHost = (other: HostPort): boolean => other.host.toLowerCase() === host.toLowerCase();
    const clash = seen.find(
      (other) =>
        other.port === port &&
        (sameHost(other) || isWildcardHost(other.host) || isWildcardHost(host)),
    );
    // Two advertised addresses that are equal are already reported by checkAddressesUnique.
    const reported = clash !== undefined && !clash.listen && !bind.listen && sameHost(clash);
    if (clash !== undefined && !reported) {
      const blamed = bind.listen || !clash.listen ? bind : clash;
      const other = blamed === bind ? clash : bind;
      problems.add(
        fieldPath(node.path, blamed.field),
        `${blamed.text} and ${other.field} ${other.text} would both bind port ${port} on this node`,
      );
    }
    seen.push({ ...bind, host, port });
  }
}

interface Bind {
  readonly field: string;
  readonly text: string | undefined;
  /** Given as a listen address, rather than falling back to an advertised one. */
  readonly listen: boolean;
}

function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || /^[0:]+$/.test(host);
}
