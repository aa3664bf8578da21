import type { Permission } from '../../config/auth.ts';
import type { IdentityQuota } from '../../lock/index.ts';
import { ApiError } from '../errors.ts';
import type { Authenticator, Caller } from './caller.ts';

/**
 * The checks each call makes before it does anything (issue 15). All pass when no
 * policy is configured. A refusal is PERMISSION_DENIED with dlm-error-code
 * permissionDenied, naming the identity, the permission and the lock name.
 */
export function requirePermission(
  auth: Authenticator | undefined,
  caller: Caller,
  permission: Permission,
  name: string,
): void {
  const policy = auth?.policy;
  if (policy === undefined || policy === null) return;
  if (policy.allows(caller.identity, permission, name)) return;
  throw denied(caller, `${permission} on ${JSON.stringify(name)}`);
}

/** `permission` on some lock name: a session serves whatever names the holder may lock. */
export function requireSomePermission(
  auth: Authenticator | undefined,
  caller: Caller,
  permission: Permission,
): void {
  const policy = auth?.policy;
  if (policy === undefined || policy === null) return;
  if (policy.allowsSome(caller.identity, permission)) return;
  throw denied(caller, `${permission} on any lock name`);
}

/** Cluster-wide operations: admin on the prefix '' (every lock name). */
export function requireAdmin(auth: Authenticator | undefined, caller: Caller, what: string): void {
  const policy = auth?.policy;
  if (policy === undefined || policy === null) return;
  if (policy.allows(caller.identity, 'admin', '')) return;
  throw denied(caller, `admin on every lock name (prefix "") to ${what}`);
}

/** Whether the caller may see what `read` shows of `name` (holders' owners). */
export function mayRead(auth: Authenticator | undefined, caller: Caller, name: string): boolean {
  const policy = auth?.policy;
  return policy === undefined || policy === null || policy.allows(caller.identity, 'read', name);
}

/**
 * What a command carries for the state machine: the caller's identity (when there is
 * one: anonymous commands stay as they were) and the per-identity limits.
 */
export function askerFields(
  auth: Authenticator | undefined,
  caller: Caller,
): { identity?: string; quota?: IdentityQuota } {
  const quota = auth?.policy?.quota ?? null;
  return { ...identityField(auth, caller), ...(quota === null ? {} : { quota }) };
}

/**
 * The caller's identity for a command, only under an `auth` section: without one a
 * command carries none (as before issue 15), so nodes of an older version, which write
 * and check none, apply every command alike during a rolling upgrade.
 */
export function identityField(
  auth: Authenticator | undefined,
  caller: Caller,
): { identity?: string } {
  if (auth?.enforcing !== true || caller.identity === '') return {};
  return { identity: caller.identity };
}

function denied(caller: Caller, what: string): ApiError {
  const who = caller.identity === '' ? 'an anonymous caller' : JSON.stringify(caller.identity);
  return new ApiError('permissionDenied', `identity ${who} has no ${what}`);
}
