import { addressKey, parseAddress } from './address.ts';
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

const ADDRESS_FIELDS = ['peerAddress', 'clientAddress', 'metricsAddress'] as const;
type AddressField = (typeof ADDRESS_FIELDS)[number];
const NODE_FIELDS: readonly string[] = ['id', ...ADDRESS_FIELDS];

/** A node's fields that passed their own checks; the cross-node checks look only at those. */
interface NodeFields {
  readonly path: string;
  id?: string;
  peerAddress?: string;
  clientAddress?: string;
  metricsAddress?: string;
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
  return Object.freeze({ id, peerAddress, clientAddress, metricsAddress });
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
