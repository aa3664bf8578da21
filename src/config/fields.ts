/**
 * Small readers for untrusted JSON. Each records what is wrong under the field's path
 * and returns undefined instead of throwing, so one pass finds every problem.
 */

export type JsonObject = Readonly<Record<string, unknown>>;

/** Collects `<path>: <message>` lines. */
export class Problems {
  readonly #list: string[] = [];

  add(path: string, message: string): void {
    this.#list.push(`${path}: ${message}`);
  }

  get list(): readonly string[] {
    return this.#list;
  }
}

/** The path of the whole document, for a problem with its shape. */
export const ROOT_PATH = '(root)';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `parent.key`, or `parent["odd key"]` when the key would not read as a name. */
export function fieldPath(parent: string, key: string): string {
  if (!IDENTIFIER.test(key)) return `${parent}[${JSON.stringify(clip(key))}]`;
  return parent === '' ? key : `${parent}.${key}`;
}

/** Values are quoted into messages; a huge one would bury the message. */
const QUOTED_CHARS_MAX = 60;

function clip(text: string): string {
  return text.length <= QUOTED_CHARS_MAX ? text : `${text.slice(0, QUOTED_CHARS_MAX)}…`;
}

/** A short description of any value, for "got …". Never throws, whatever the value (bigint, cycle). */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(clip(value));
    case 'number':
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An own field; `undefined` counts as absent, as it does in JSON. Inherited names never count. */
export function ownField(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

export function readObject(
  problems: Problems,
  path: string,
  value: unknown,
): JsonObject | undefined {
  if (isJsonObject(value)) return value;
  problems.add(path, `expected an object, got ${describeValue(value)}`);
  return undefined;
}

/** Only required fields are strings, so an absent one is a problem too. */
export function readString(problems: Problems, path: string, value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const problem =
    value === undefined
      ? 'missing required field'
      : `expected a string, got ${describeValue(value)}`;
  problems.add(path, problem);
  return undefined;
}

export function readBoolean(problems: Problems, path: string, value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  problems.add(path, `expected a boolean, got ${describeValue(value)}`);
  return undefined;
}

export interface IntegerRange {
  readonly min: number;
  readonly max: number;
}

export function readInteger(
  problems: Problems,
  path: string,
  value: unknown,
  range: IntegerRange,
): number | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    problems.add(path, `expected an integer, got ${describeValue(value)}`);
  } else if (value < range.min || value > range.max) {
    problems.add(path, `expected an integer in ${range.min}..${range.max}, got ${value}`);
  } else {
    return value;
  }
  return undefined;
}

/**
 * Every key that is not `known` is a problem: a misspelt field would otherwise be
 * silently replaced by its default. `homes` maps a field of another section to that
 * section, for the common slip of putting it in the wrong one.
 */
export function rejectUnknownFields(
  problems: Problems,
  path: string,
  object: JsonObject,
  known: readonly string[],
  homes: ReadonlyMap<string, string> = new Map(),
): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    problems.add(fieldPath(path, key), `unknown field${unknownFieldHint(key, known, homes)}`);
  }
}

function unknownFieldHint(
  key: string,
  known: readonly string[],
  homes: ReadonlyMap<string, string>,
): string {
  const home = homes.get(key);
  if (home !== undefined) return ` (it belongs in ${home}.${key})`;
  const suggestion = closestName(key, known);
  return suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`;
}

/** Names longer than this are not typos of a field name; comparing them only costs time. */
const SUGGESTED_NAME_CHARS_MAX = 64;

/**
 * The known name nearest to `name` by edit distance, ignoring case, when it is near
 * enough to be a plausible slip: within a third of the longer name, or a prefix
 * (`electionTimeout` for `electionTimeoutTicks`).
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  if (name.length === 0 || name.length > SUGGESTED_NAME_CHARS_MAX) return undefined;
  const lower = name.toLowerCase();
  let best: { readonly name: string; readonly distance: number } | undefined;
  for (const candidate of known) {
    const other = candidate.toLowerCase();
    const distance = editDistance(lower, other);
    const near =
      distance <= Math.max(2, Math.floor(Math.max(lower.length, other.length) / 3)) ||
      (lower.length >= 4 && (other.startsWith(lower) || lower.startsWith(other)));
    if (near && (best === undefined || distance < best.distance)) {
      best = { name: candidate, distance };
    }
  }
  return best?.name;
}

/** Levenshtein distance, one row at a time. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
