import { createHash } from 'node:crypto';
import { LOCK_LIMIT_NAMES, type LockLimits } from '../lock/index.ts';
import { OPTIONAL_LOCK_RULE_NAMES } from '../lock/optional-rules.ts';
import { wireFieldName } from './errors.ts';
import { toUint64, type Uint64 } from './proto.ts';

/**
 * The lock rules on the wire (message LockRules of proto/dlm.proto): each field of
 * LockLimits under its snake_case name, so the proto and the config file name the same
 * rule the same way.
 */
export type WireLockRules = Readonly<Record<string, Uint64>>;

/** `sessionTtlMsMin` → `session_ttl_ms_min`. */
export function wireRuleName(field: keyof LockLimits): string {
  return wireFieldName(field);
}

/** The optional rules (OPTIONAL_LOCK_RULES) go out as 0 when not set: their default applies. */
export function wireLockRules(rules: LockLimits): WireLockRules {
  return Object.fromEntries([
    ...LOCK_LIMIT_NAMES.map((field) => [wireRuleName(field), toUint64(rules[field])]),
    ...OPTIONAL_LOCK_RULE_NAMES.map((field) => [wireRuleName(field), toUint64(rules[field] ?? 0)]),
  ]);
}

/** The rules of a wire LockRules: an optional rule at 0 is not set. */
export function lockRulesFromWire(wire: Readonly<Record<string, unknown>> | null | undefined) {
  const rules: Record<string, number> = {};
  for (const field of LOCK_LIMIT_NAMES) rules[field] = Number(wire?.[wireRuleName(field)] ?? 0);
  for (const field of OPTIONAL_LOCK_RULE_NAMES) {
    const value = Number(wire?.[wireRuleName(field)] ?? 0);
    if (value !== 0) rules[field] = value;
  }
  return rules as unknown as LockLimits;
}

/** Hex characters of the digest: enough to tell two sets of rules apart at a glance. */
const DIGEST_CHARS = 12;

/** A short digest of the rules, the same for equal rules on every node and version. */
export function lockRulesDigest(rules: LockLimits): string {
  // An optional rule counts only when set, so rules without any keep the digest they had.
  const set = OPTIONAL_LOCK_RULE_NAMES.filter((field) => rules[field] !== undefined);
  const canonical = [...LOCK_LIMIT_NAMES, ...set]
    .map((field) => `${field}=${rules[field]}`)
    .join(',');
  return createHash('sha256').update(canonical).digest('hex').slice(0, DIGEST_CHARS);
}
