import {
  DEFAULT_LOCK_LIMITS,
  LOCK_LIMIT_CEILINGS,
  type LockLimits,
  TIMER_MS_MAX,
  validateLockLimits,
} from '../lock/limits.ts';
import { OPTIONAL_LOCK_RULE_NAMES, OPTIONAL_LOCK_RULES } from '../lock/optional-rules.ts';
import { DEFAULT_RAFT_OPTIONS, validateRaftOptions } from '../raft/options.ts';
import { AssertionError } from '../util/assert.ts';
import {
  fieldPath,
  type IntegerRange,
  type JsonObject,
  ownField,
  type Problems,
  readBoolean,
  readInteger,
  readObject,
  rejectUnknownFields,
} from './fields.ts';
import {
  DEFAULT_RUNTIME_CONFIG,
  DEFAULT_TICK_INTERVAL_MS,
  type RaftConfig,
  type RuntimeConfig,
} from './types.ts';

/**
 * The raft, lock and runtime sections: flat records of integers and booleans, every
 * field optional. Each section's fields, and their types, come from its defaults, so
 * an option added to the core is accepted here without touching this file.
 */
type Scalar = number | boolean;
/** Written as a mapped type so that interfaces (which lack index signatures) satisfy it. */
type Section<T> = { readonly [K in keyof T]: Scalar };
type Fields = Readonly<Record<string, Scalar>>;

interface SectionSpec<T extends Section<T>> {
  readonly name: string;
  readonly defaults: T;
  /** Integer fields for which 0 is meaningful (no delay, no lag, keep nothing). */
  readonly zeroAllowed: ReadonlySet<string>;
  /** `a` must be greater than (`exceeds`) or at most (`atMost`) `b`. */
  readonly orderings: readonly Ordering[];
  /** The core's own validator, run last as a backstop for checks this file lacks. */
  readonly validate?: (values: T) => void;
  /** Each integer field's largest value, where the core sets one. */
  readonly ceilings?: { readonly [K in keyof T]?: number };
  /**
   * Integer fields with no default here, each with its ceiling: absent from the file,
   * they stay absent from the section (the core then applies its own default), so a
   * section without them reads as it did before they existed.
   */
  readonly optional?: Readonly<Record<string, number>>;
}

interface Ordering {
  readonly a: string;
  readonly relation: 'exceeds' | 'atMost';
  readonly b: string;
}

export { TIMER_MS_MAX };

const RAFT: SectionSpec<RaftConfig> = {
  name: 'raft',
  defaults: { tickIntervalMs: DEFAULT_TICK_INTERVAL_MS, ...DEFAULT_RAFT_OPTIONS },
  zeroAllowed: new Set(['learnerPromotionLagEntriesMax']),
  orderings: [{ a: 'electionTimeoutTicks', relation: 'exceeds', b: 'heartbeatIntervalTicks' }],
  validate: validateRaftOptions,
};

const LOCK: SectionSpec<LockLimits> = {
  name: 'lock',
  defaults: DEFAULT_LOCK_LIMITS,
  zeroAllowed: new Set(['lockDelayMs']),
  orderings: [
    { a: 'sessionTtlMsMin', relation: 'atMost', b: 'sessionTtlMsMax' },
    { a: 'lockDelayMs', relation: 'atMost', b: 'lockDelayMsMax' },
  ],
  validate: validateLockLimits,
  ceilings: LOCK_LIMIT_CEILINGS,
  optional: Object.fromEntries(
    OPTIONAL_LOCK_RULE_NAMES.map((name) => [name, OPTIONAL_LOCK_RULES[name].ceiling]),
  ),
};

const RUNTIME: SectionSpec<RuntimeConfig> = {
  name: 'runtime',
  defaults: DEFAULT_RUNTIME_CONFIG,
  zeroAllowed: new Set([
    'compactionRetainEntries',
    'compactionHoldEntriesMax',
    'shutdownDrainMs',
    'observeConfirmIntervalMs',
    'restoreCollectBytesMin',
    'heapGrowingPercent',
    'heapTargetMb',
  ]),
  orderings: [{ a: 'peerReconnectDelayMsMin', relation: 'atMost', b: 'peerReconnectDelayMsMax' }],
  // A frame header carries its length in 32 bits.
  // grpc-js takes a signed 32-bit message size.
  ceilings: {
    peerFrameBytesMax: 0xffff_ffff,
    peerMessageBytesMax: 0x7fff_ffff,
    clientRequestBytesMax: 0x7fff_ffff,
    // V8 takes the flag as a signed 32-bit integer; ten times the live heap is plenty.
    heapGrowingPercent: 1_000,
    // 64 GB: past any heap V8 gives a Node process.
    heapTargetMb: 65_536,
  },
};

export const SECTION_NAMES: readonly string[] = [RAFT.name, LOCK.name, RUNTIME.name];

export function readRaftSection(problems: Problems, value: unknown): RaftConfig {
  return readSection(problems, value, RAFT);
}

export function readLockSection(problems: Problems, value: unknown): LockLimits {
  return readSection(problems, value, LOCK);
}

export function readRuntimeSection(problems: Problems, value: unknown): RuntimeConfig {
  return readSection(problems, value, RUNTIME);
}

/**
 * Where each section field lives, for a field written in the wrong place. Keys that
 * belong to `except` are left out, since there they are not misplaced.
 */
export function fieldHomes(except?: string): ReadonlyMap<string, string> {
  const homes = new Map<string, string>();
  const sections = [RAFT, LOCK, RUNTIME] as const;
  const own = new Set(fieldNames(sections.find((s) => s.name === except)));
  for (const section of sections) {
    for (const key of fieldNames(section)) {
      if (!own.has(key)) homes.set(key, section.name);
    }
  }
  return homes;
}

/** Every field a section may have: those with defaults, then the optional ones. */
function fieldNames(
  spec:
    | { readonly defaults: object; readonly optional?: Readonly<Record<string, number>> }
    | undefined,
): string[] {
  if (spec === undefined) return [];
  return [...Object.keys(spec.defaults), ...Object.keys(spec.optional ?? {})];
}

function readSection<T extends Section<T>>(
  problems: Problems,
  value: unknown,
  spec: SectionSpec<T>,
): T {
  if (value === undefined) return Object.freeze({ ...spec.defaults });
  const object = readObject(problems, spec.name, value);
  if (object === undefined) return Object.freeze({ ...spec.defaults });
  const problemsBefore = problems.list.length;
  rejectUnknownFields(
    problems,
    spec.name,
    object,
    [...Object.keys(spec.defaults), ...Object.keys(spec.optional ?? {})],
    fieldHomes(spec.name),
  );
  const { values, invalid } = readFields(problems, object, spec);
  checkOrderings(problems, spec, values, invalid);
  const section = values as unknown as T;
  if (problems.list.length === problemsBefore) runBackstop(problems, spec, section);
  return Object.freeze(section);
}

/** The defaults overlaid with every valid field given, and the names of the invalid ones. */
function readFields<T extends Section<T>>(
  problems: Problems,
  object: JsonObject,
  spec: SectionSpec<T>,
): { values: Record<string, Scalar>; invalid: Set<string> } {
  const values: Record<string, Scalar> = { ...(spec.defaults as Fields) };
  const invalid = new Set<string>();
  for (const key of Object.keys(spec.defaults)) {
    const given = ownField(object, key);
    if (given === undefined) continue;
    const read = readScalar(problems, fieldPath(spec.name, key), given, spec, key);
    if (read === undefined) invalid.add(key);
    else values[key] = read;
  }
  for (const [key, max] of Object.entries(spec.optional ?? {})) {
    const given = ownField(object, key);
    if (given === undefined) continue;
    const read = readInteger(problems, fieldPath(spec.name, key), given, { min: 1, max });
    if (read === undefined) invalid.add(key);
    else values[key] = read;
  }
  return { values, invalid };
}

function readScalar<T extends Section<T>>(
  problems: Problems,
  path: string,
  value: unknown,
  spec: SectionSpec<T>,
  key: string,
): Scalar | undefined {
  if (typeof (spec.defaults as Fields)[key] === 'boolean') {
    return readBoolean(problems, path, value);
  }
  return readInteger(problems, path, value, integerRange(spec, key));
}

/** Every duration is waited on by a Node timer somewhere, so it must fit one. */
function integerRange<T extends Section<T>>(spec: SectionSpec<T>, key: string): IntegerRange {
  const min = spec.zeroAllowed.has(key) ? 0 : 1;
  const max =
    spec.ceilings?.[key as keyof T] ??
    (/Ms(Min|Max)?$/.test(key) ? TIMER_MS_MAX : Number.MAX_SAFE_INTEGER);
  return { min, max };
}

/** A field that was itself invalid is skipped: comparing its default would mislead. */
function checkOrderings<T extends Section<T>>(
  problems: Problems,
  spec: SectionSpec<T>,
  values: Fields,
  invalid: ReadonlySet<string>,
): void {
  for (const { a, relation, b } of spec.orderings) {
    if (invalid.has(a) || invalid.has(b)) continue;
    const [valueA, valueB] = [Number(values[a]), Number(values[b])];
    const pathA = fieldPath(spec.name, a);
    const pathB = fieldPath(spec.name, b);
    if (relation === 'exceeds' && valueA <= valueB) {
      problems.add(pathA, `must exceed ${pathB} (${valueA} <= ${valueB})`);
    } else if (relation === 'atMost' && valueA > valueB) {
      problems.add(pathA, `must not exceed ${pathB} (${valueA} > ${valueB})`);
    }
  }
}

/** The core asserts its own invariants; one this file does not know yet still becomes a ConfigError. */
function runBackstop<T extends Section<T>>(
  problems: Problems,
  spec: SectionSpec<T>,
  values: T,
): void {
  try {
    spec.validate?.(values);
  } catch (error) {
    if (!(error instanceof AssertionError)) throw error;
    problems.add(spec.name, error.message);
  }
}
