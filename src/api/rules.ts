import { createHash } from 'node:crypto';
import { LOCK_LIMIT_NAMES, type LockLimits } from '../lock/index.ts';
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

export function wireLockRules(rules: LockLimits): WireLockRules {
  return Object.fromEntries(
    LOCK_LIMIT_NAMES.map((field) => [wireRuleName(field), toUint64(rules[field])]),
  );
}

/** Hex characters of the digest: enough to tell two sets of rules apart at a glance. */
const DIGEST_CHARS = 12;

/** A short digest of the rules, the same for equal rules on every node and version. */
export function lockRulesDigest(rules: LockLimits): string {
  const canonical = LOCK_LIMIT_NAMES.map((field) => `${field}=${rules[field]}`).join(',');
  return createHash('sha256').update(canonical).digest('hex').slice(0, DIGEST_CHARS);
}
