import { createHash } from 'node:crypto';
import type { AuthConfig, IdentityLimits, Permission, RoleGrant } from '../../config/auth.ts';
import type { IdentityQuota } from '../../lock/index.ts';

/** Every authenticated identity gets the roles listed under this name too. */
export const ANY_IDENTITY = '*';

/** Hex characters of the policy digest, like the lock rules' digest. */
const DIGEST_CHARS = 12;

/**
 * What each identity may do on which lock names: the roles of the `auth` section,
 * flattened per identity once, so a check is a scan of that identity's few grants.
 * Cluster-wide operations (membership, leader transfer, SetLockRules) need `admin` on the
 * prefix '' (every name).
 */
export class Policy {
  private readonly grantsByIdentity = new Map<string, readonly RoleGrant[]>();
  private readonly anyGrants: readonly RoleGrant[];
  readonly digest: string;
  readonly quota: IdentityQuota | null;

  constructor(private readonly config: AuthConfig) {
    const grantsOf = (roles: readonly string[]): RoleGrant[] =>
      roles.flatMap((role) => config.roles.get(role) ?? []);
    this.anyGrants = grantsOf(config.identities.get(ANY_IDENTITY) ?? []);
    for (const [identity, roles] of config.identities) {
      if (identity !== ANY_IDENTITY) this.grantsByIdentity.set(identity, grantsOf(roles));
    }
    this.digest = policyDigest(config);
    this.quota = config.limits === null ? null : quotaOf(config.limits);
  }

  /** Whether `identity` may do `permission` on the lock `name`. */
  allows(identity: string, permission: Permission, name: string): boolean {
    return this.someGrant(identity, (grant) => covers(grant, permission, name));
  }

  /**
   * Whether `identity` may do `permission` on every name that starts with `prefix` (a
   * Watch of the prefix): some grant's prefix is a prefix of it.
   */
  allowsAll(identity: string, permission: Permission, prefix: string): boolean {
    return this.allows(identity, permission, prefix);
  }

  /** Whether `identity` has `permission` on any name at all (OpenSession, KeepAlive). */
  allowsSome(identity: string, permission: Permission): boolean {
    return this.someGrant(identity, (grant) => grant.grant.includes(permission));
  }

  /** The roles' grants that apply to `identity`; for error messages and `dlm status`. */
  grantsOf(identity: string): readonly RoleGrant[] {
    return [...(this.grantsByIdentity.get(identity) ?? []), ...this.anyGrants];
  }

  get roleCount(): number {
    return this.config.roles.size;
  }

  private someGrant(identity: string, test: (grant: RoleGrant) => boolean): boolean {
    if (identity === '') return false;
    const own = this.grantsByIdentity.get(identity);
    return own?.some(test) === true || this.anyGrants.some(test);
  }
}

/**
 * A grant on prefix P covers name N when N starts with P. Since every name under a
 * Watch prefix W starts with W, a grant covers all of them exactly when W starts with P,
 * which is the same test with W as the name.
 */
function covers(grant: RoleGrant, permission: Permission, name: string): boolean {
  return grant.grant.includes(permission) && name.startsWith(grant.prefix);
}

function quotaOf(limits: IdentityLimits): IdentityQuota {
  return {
    sessionsMax: limits.sessionsPerIdentityMax,
    locksHeldMax: limits.locksHeldPerIdentityMax,
    waitersMax: limits.waitersPerIdentityMax,
  };
}

/**
 * A short digest of the whole policy (tokens' hashes, roles, identities, limits, the
 * budget of refused writes) in a canonical order, so two nodes with the same policy show
 * the same digest whatever the order of their files. It reveals nothing: tokens are
 * hashed already, and it is cut short.
 */
export function policyDigest(config: AuthConfig): string {
  const sorted = <T>(entries: Iterable<[string, T]>): [string, T][] =>
    [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify({
    tokens: config.tokens.map((token) => JSON.stringify(token)).sort(),
    roles: sorted(config.roles).map(([name, grants]) => [
      name,
      grants.map((grant) => [grant.prefix, [...grant.grant].sort()]),
    ]),
    identities: sorted(config.identities).map(([id, roles]) => [id, [...roles].sort()]),
    limits: config.limits,
    refusedWrites: [config.refusedWritesPerIdentityMax, config.refusedWritesWindowMs],
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, DIGEST_CHARS);
}
