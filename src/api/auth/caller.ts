import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { type AuthConfig, IDENTITY_BYTES_MAX } from '../../config/auth.ts';
import type { AuthFailureListener, AuthFailureReason } from '../../transport/peer-identity.ts';
import { assert } from '../../util/assert.ts';
import { ApiError } from '../errors.ts';
import { Policy } from './policy.ts';
import { RefusalBudget } from './refusal-budget.ts';
import { TokenVerifier } from './tokens.ts';

/** Who made a call: the identity the node established, '' for an anonymous caller. */
export interface Caller {
  readonly identity: string;
}

export const ANONYMOUS: Caller = Object.freeze({ identity: '' });

/** What a call offers to prove who it is: grpc-js's call has both, and its address. */
export interface Credentials {
  readonly metadata: Metadata;
  getAuthContext?(): { readonly sslPeerCertificate?: PeerCertificate };
  getPeer?(): string;
}

export const AUTHORIZATION_KEY = 'authorization';
const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/;

/** The policy and the tokens it is checked with, replaced together (see replace). */
interface AccessRules {
  readonly policy: Policy | null;
  readonly tokens: TokenVerifier;
  readonly refusals: RefusalBudget | null;
}

function refusalBudget(config: AuthConfig): RefusalBudget {
  return new RefusalBudget(config.refusedWritesPerIdentityMax, config.refusedWritesWindowMs);
}

/**
 * Establishes the caller of each call and holds the policy. The identity is a bearer
 * token's (`authorization: Bearer …`) when the call sends one and tokens are configured,
 * else the client
 * certificate's subject under mutual TLS (its CN, else its first URI SAN, else its first
 * DNS SAN), else none. With no `auth` section, no call is refused here: a caller without
 * credentials is anonymous and the policy allows everything (dlm stays open, as before).
 * With one, a call that establishes no identity is refused UNAUTHENTICATED, and the
 * policy decides the rest. Each refusal is reported (counted and logged by the caller of
 * the constructor), with the caller's address and never the token.
 */
export class Authenticator {
  private rules: AccessRules;
  private replacements = 0;

  constructor(
    config: AuthConfig | null,
    private readonly reportFailure: AuthFailureListener = () => {},
  ) {
    this.rules = {
      policy: config === null ? null : new Policy(config),
      tokens: new TokenVerifier(config?.tokens ?? [], config?.scryptVerificationsMax),
      refusals: config === null ? null : refusalBudget(config),
    };
  }

  /** The policy in force now: read at each check, so a replaced one applies to the next. */
  get policy(): Policy | null {
    return this.rules.policy;
  }

  /** Each identity's writes refused when applied, bounded; null without a policy (open). */
  get refusals(): RefusalBudget | null {
    return this.rules.refusals;
  }

  /** Whether calls are checked at all; false keeps the open path free of work. */
  get enforcing(): boolean {
    return this.rules.policy !== null;
  }

  /**
   * How many times the policy was replaced. A stream, authenticated once when it
   * opened, authenticates again when this moved on, so a token removed from the config
   * stops working on streams already open too.
   */
  get generation(): number {
    return this.replacements;
  }

  /**
   * Puts a new `auth` section in force (SIGHUP), in one assignment: every check from
   * now on sees the new roles, identities, tokens and limits, and a call already past
   * its checks finishes as it began. Only between two sections: whether there is one at
   * all is fixed at start (it decides whether commands carry identities).
   */
  replace(config: AuthConfig): Policy {
    assert(this.enforcing, 'an Authenticator started without a policy cannot be given one');
    const policy = new Policy(config);
    const { refusals } = this.rules;
    // Unchanged limits keep what each identity has spent, so a reload is no fresh budget.
    const sameLimits =
      refusals !== null &&
      refusals.max === config.refusedWritesPerIdentityMax &&
      refusals.windowMs === config.refusedWritesWindowMs;
    this.rules = {
      policy,
      tokens: new TokenVerifier(config.tokens, config.scryptVerificationsMax, this.rules.tokens),
      refusals: sameLimits ? refusals : refusalBudget(config),
    };
    this.replacements++;
    return policy;
  }

  /** The caller of a call, or ApiError unauthenticated (a bad token, or none when required). */
  async authenticate(call: Credentials): Promise<Caller> {
    const { tokens } = this.rules;
    // Without configured tokens a header proves nothing: it is ignored, so an open
    // cluster stays open to a client that sends one anyway.
    const header = tokens.size === 0 ? undefined : call.metadata.get(AUTHORIZATION_KEY)[0];
    if (header !== undefined) return this.tokenCaller(call, tokens, header);
    const identity = certificateIdentity(call.getAuthContext?.().sslPeerCertificate);
    if (identity !== null) return this.boundedCaller(call, identity);
    if (!this.enforcing) return ANONYMOUS;
    throw this.refuse(
      call,
      'no_credentials',
      'this cluster requires an identity: a client certificate or an authorization: Bearer token',
    );
  }

  /** A certificate's subject may be any length; an identity is at most IDENTITY_BYTES_MAX. */
  private boundedCaller(call: Credentials, identity: string): Caller {
    const bytes = Buffer.byteLength(identity);
    if (bytes <= IDENTITY_BYTES_MAX) return { identity };
    throw this.refuse(
      call,
      'identity_too_long',
      `the client certificate's subject is ${bytes} bytes, over IDENTITY_BYTES_MAX (${IDENTITY_BYTES_MAX})`,
    );
  }

  private async tokenCaller(
    call: Credentials,
    tokens: TokenVerifier,
    header: string | Buffer,
  ): Promise<Caller> {
    const match = typeof header === 'string' ? BEARER.exec(header) : null;
    const token = match?.[1];
    if (token === undefined) {
      throw this.refuse(
        call,
        'malformed_authorization',
        'authorization metadata must be "Bearer <token>"',
      );
    }
    const identity = await tokens.identityOf(token);
    if (identity === null) {
      throw this.refuse(call, 'unknown_token', 'the bearer token matches no entry of auth.tokens');
    }
    return { identity };
  }

  /** Reports the refusal (its message names no secret) and makes the caller's error. */
  private refuse(call: Credentials, reason: AuthFailureReason, message: string): ApiError {
    this.reportFailure(call.getPeer?.() ?? 'unknown', reason, message);
    return new ApiError('unauthenticated', message);
  }
}

/** The subject a client certificate names: CN, else the first URI SAN, else the first DNS SAN. */
export function certificateIdentity(certificate: PeerCertificate | undefined): string | null {
  if (certificate === undefined || certificate === null) return null;
  const cn = certificate.subject?.CN;
  const common = Array.isArray(cn) ? cn[0] : cn;
  if (typeof common === 'string' && common !== '') return common;
  const names = (certificate.subjectaltname ?? '').split(', ');
  const uri = names.find((name) => name.startsWith('URI:'));
  if (uri !== undefined) return uri.slice('URI:'.length);
  const dns = names.find((name) => name.startsWith('DNS:'));
  return dns === undefined ? null : dns.slice('DNS:'.length);
}
