import { IDENTITY_BYTES_MAX } from '../lock/identity-quota.ts';
import {
  describeValue,
  fieldPath,
  type JsonObject,
  ownField,
  type Problems,
  readInteger,
  readObject,
  readString,
  rejectUnknownFields,
} from './fields.ts';

export { IDENTITY_BYTES_MAX };

/**
 * The `auth` section of cluster.config.json (issue 15): who a caller is, and what each
 * identity may do on which lock names. Absent: dlm stays open as before (any caller may
 * do anything, and even under mutual TLS commands carry no identity and sessions no owner,
 * so a rolling upgrade never mixes nodes that check owners with nodes that do not).
 */
export interface AuthConfig {
  /** Bearer tokens, hashed: a token is never written in clear. */
  readonly tokens: readonly TokenEntry[];
  /** Role name → the grants it makes. */
  readonly roles: ReadonlyMap<string, readonly RoleGrant[]>;
  /**
   * Identity → role names. `*` gives its roles to every authenticated identity, besides
   * its own.
   */
  readonly identities: ReadonlyMap<string, readonly string[]>;
  /** Per-identity limits; null: none beyond the cluster-wide ones. */
  readonly limits: IdentityLimits | null;
  /**
   * Bearer tokens checked with scrypt at once (about 50 ms of a libuv pool thread each,
   * the pool LevelDB writes on); past it a call is refused RESOURCE_EXHAUSTED.
   */
  readonly scryptVerificationsMax: number;
  /**
   * Per node, the writes one identity may have in flight plus those refused when applied
   * in the last refusedWritesWindowMs (see RefusalBudget); past it a write is refused
   * RESOURCE_EXHAUSTED before it is proposed, so no tenant can fill the log with writes
   * that do nothing.
   */
  readonly refusedWritesPerIdentityMax: number;
  readonly refusedWritesWindowMs: number;
}

export const PERMISSIONS = ['read', 'lock', 'admin'] as const;
/**
 * read: Describe, ValidateFence, Watch. lock: sessions, Acquire, Release. admin:
 * membership, leader transfer, SetLockRules (on the prefix '' only: they are
 * cluster-wide).
 */
export type Permission = (typeof PERMISSIONS)[number];

/** `grant` on every lock name that starts with `prefix` ('' = every name). */
export interface RoleGrant {
  readonly prefix: string;
  readonly grant: readonly Permission[];
}

/** A token's identity and its hash: `sha256` (hex) or `scrypt` (`saltHex:hashHex`). */
export type TokenEntry =
  | { readonly identity: string; readonly sha256: string }
  | { readonly identity: string; readonly scrypt: string };

export interface IdentityLimits {
  readonly sessionsPerIdentityMax: number;
  readonly locksHeldPerIdentityMax: number;
  readonly waitersPerIdentityMax: number;
}

const AUTH_FIELDS = [
  'tokens',
  'roles',
  'identities',
  'limits',
  'scryptVerificationsMax',
  'refusedWritesPerIdentityMax',
  'refusedWritesWindowMs',
];
/** Half of libuv's default pool of 4 threads: LevelDB keeps the other half. */
export const SCRYPT_VERIFICATIONS_DEFAULT = 2;
const SCRYPT_VERIFICATIONS_MAX = 64;
/**
 * About a tenth of runtime.pendingProposalsMax's default (4,096), so no one identity's
 * burst fills a node's pending writes, and far more than any client has in flight;
 * refused writes rarely come in more than ones and twos from a client that means well.
 */
export const REFUSED_WRITES_PER_IDENTITY_DEFAULT = 400;
export const REFUSED_WRITES_WINDOW_MS_DEFAULT = 10_000;
const REFUSED_WRITES_PER_IDENTITY_LIMITS = { min: 1, max: 1_000_000 };
const REFUSED_WRITES_WINDOW_MS_LIMITS = { min: 1, max: 3_600_000 };
const LIMIT_FIELDS: readonly (keyof IdentityLimits)[] = [
  'sessionsPerIdentityMax',
  'locksHeldPerIdentityMax',
  'waitersPerIdentityMax',
];
/** Bounds what one config can make every call scan. */
export const AUTH_ENTRIES_MAX = 10_000;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SCRYPT_TEXT = /^[0-9a-f]{16,128}:[0-9a-f]{64}$/;

/** The `auth` section, every problem recorded under its path; null when absent. */
export function readAuthSection(problems: Problems, value: unknown): AuthConfig | null {
  if (value === undefined) return null;
  const section = readObject(problems, 'auth', value);
  if (section === undefined) return null;
  rejectUnknownFields(problems, 'auth', section, AUTH_FIELDS);
  const roles = readRoles(problems, ownField(section, 'roles'));
  const identities = readIdentities(problems, ownField(section, 'identities'), roles);
  return {
    tokens: readTokens(problems, ownField(section, 'tokens')),
    roles,
    identities,
    limits: readLimits(problems, ownField(section, 'limits')),
    scryptVerificationsMax: readBound(
      problems,
      section,
      'scryptVerificationsMax',
      { min: 1, max: SCRYPT_VERIFICATIONS_MAX },
      SCRYPT_VERIFICATIONS_DEFAULT,
    ),
    refusedWritesPerIdentityMax: readBound(
      problems,
      section,
      'refusedWritesPerIdentityMax',
      REFUSED_WRITES_PER_IDENTITY_LIMITS,
      REFUSED_WRITES_PER_IDENTITY_DEFAULT,
    ),
    refusedWritesWindowMs: readBound(
      problems,
      section,
      'refusedWritesWindowMs',
      REFUSED_WRITES_WINDOW_MS_LIMITS,
      REFUSED_WRITES_WINDOW_MS_DEFAULT,
    ),
  };
}

/** An optional integer field of the section, within `limits`; `fallback` when absent. */
function readBound(
  problems: Problems,
  section: JsonObject,
  key: string,
  limits: { min: number; max: number },
  fallback: number,
): number {
  const value = ownField(section, key);
  if (value === undefined) return fallback;
  return readInteger(problems, `auth.${key}`, value, limits) ?? fallback;
}

function readList(problems: Problems, path: string, value: unknown): readonly unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problems.add(path, `expected a list, got ${describeValue(value)}`);
    return [];
  }
  if (value.length > AUTH_ENTRIES_MAX) {
    problems.add(path, `expected at most ${AUTH_ENTRIES_MAX} entries, got ${value.length}`);
    return [];
  }
  return value;
}

function readEntries(problems: Problems, path: string, value: unknown): [string, unknown][] {
  if (value === undefined) return [];
  const object = readObject(problems, path, value);
  if (object === undefined) return [];
  const entries = Object.entries(object);
  if (entries.length > AUTH_ENTRIES_MAX) {
    problems.add(path, `expected at most ${AUTH_ENTRIES_MAX} entries, got ${entries.length}`);
    return [];
  }
  return entries;
}

function readIdentity(problems: Problems, path: string, value: unknown): string | undefined {
  const text = readString(problems, path, value);
  if (text === undefined) return undefined;
  if (text === '' || Buffer.byteLength(text) > IDENTITY_BYTES_MAX) {
    problems.add(path, `expected 1 to ${IDENTITY_BYTES_MAX} bytes, got ${describeValue(text)}`);
    return undefined;
  }
  return text;
}

function readTokens(problems: Problems, value: unknown): TokenEntry[] {
  const tokens: TokenEntry[] = [];
  readList(problems, 'auth.tokens', value).forEach((item, k) => {
    const path = `auth.tokens[${k}]`;
    const entry = readObject(problems, path, item);
    if (entry === undefined) return;
    rejectUnknownFields(problems, path, entry, ['identity', 'sha256', 'scrypt']);
    const identity = readIdentity(problems, fieldPath(path, 'identity'), entry.identity);
    const token = readTokenHash(problems, path, entry);
    if (identity !== undefined && token !== undefined) tokens.push({ identity, ...token });
  });
  return tokens;
}

function readTokenHash(
  problems: Problems,
  path: string,
  entry: JsonObject,
): { sha256: string } | { scrypt: string } | undefined {
  const sha256 = ownField(entry, 'sha256');
  const scrypt = ownField(entry, 'scrypt');
  if ((sha256 === undefined) === (scrypt === undefined)) {
    problems.add(
      path,
      'expected exactly one of sha256 or scrypt (scripts/auth-token.ts makes one)',
    );
    return undefined;
  }
  if (sha256 !== undefined) {
    if (typeof sha256 === 'string' && SHA256_HEX.test(sha256)) return { sha256 };
    problems.add(
      fieldPath(path, 'sha256'),
      `expected 64 lowercase hex digits, got a ${typeof sha256}`,
    );
    return undefined;
  }
  if (typeof scrypt === 'string' && SCRYPT_TEXT.test(scrypt)) return { scrypt };
  // Never quote the value: an operator may have pasted the token itself.
  problems.add(fieldPath(path, 'scrypt'), 'expected saltHex:hashHex (32-byte hash)');
  return undefined;
}

function readRoles(problems: Problems, value: unknown): Map<string, RoleGrant[]> {
  const roles = new Map<string, RoleGrant[]>();
  for (const [name, grants] of readEntries(problems, 'auth.roles', value)) {
    const path = fieldPath('auth.roles', name);
    const list: RoleGrant[] = [];
    readList(problems, path, grants).forEach((item, k) => {
      const grant = readGrant(problems, `${path}[${k}]`, item);
      if (grant !== undefined) list.push(grant);
    });
    roles.set(name, list);
  }
  return roles;
}

function readGrant(problems: Problems, path: string, value: unknown): RoleGrant | undefined {
  const entry = readObject(problems, path, value);
  if (entry === undefined) return undefined;
  rejectUnknownFields(problems, path, entry, ['prefix', 'grant']);
  const prefix = readString(problems, fieldPath(path, 'prefix'), entry.prefix);
  const grant: Permission[] = [];
  readList(problems, fieldPath(path, 'grant'), entry.grant).forEach((item, k) => {
    const permission = PERMISSIONS.find((known) => known === item);
    if (permission === undefined) {
      const expected = PERMISSIONS.map((known) => JSON.stringify(known)).join(', ');
      problems.add(
        `${path}.grant[${k}]`,
        `expected one of ${expected}, got ${describeValue(item)}`,
      );
    } else if (!grant.includes(permission)) {
      grant.push(permission);
    }
  });
  return prefix === undefined ? undefined : { prefix, grant };
}

function readIdentities(
  problems: Problems,
  value: unknown,
  roles: ReadonlyMap<string, unknown>,
): Map<string, string[]> {
  const identities = new Map<string, string[]>();
  for (const [identity, names] of readEntries(problems, 'auth.identities', value)) {
    const path = fieldPath('auth.identities', identity);
    const list: string[] = [];
    readList(problems, path, names).forEach((item, k) => {
      if (typeof item === 'string' && roles.has(item)) list.push(item);
      else
        problems.add(`${path}[${k}]`, `expected a role of auth.roles, got ${describeValue(item)}`);
    });
    identities.set(identity, list);
  }
  return identities;
}

function readLimits(problems: Problems, value: unknown): IdentityLimits | null {
  if (value === undefined) return null;
  const section = readObject(problems, 'auth.limits', value);
  if (section === undefined) return null;
  rejectUnknownFields(problems, 'auth.limits', section, LIMIT_FIELDS);
  const read = (key: keyof IdentityLimits): number => {
    const path = fieldPath('auth.limits', key);
    const field = ownField(section, key);
    if (field === undefined) {
      problems.add(path, 'missing required field');
      return 0;
    }
    return readInteger(problems, path, field, { min: 0, max: Number.MAX_SAFE_INTEGER }) ?? 0;
  };
  return {
    sessionsPerIdentityMax: read('sessionsPerIdentityMax'),
    locksHeldPerIdentityMax: read('locksHeldPerIdentityMax'),
    waitersPerIdentityMax: read('waitersPerIdentityMax'),
  };
}
