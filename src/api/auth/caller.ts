import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { type AuthConfig, IDENTITY_BYTES_MAX } from '../../config/auth.ts';
import { ApiError } from '../errors.ts';
import { Policy } from './policy.ts';
import { RefusalBudget } from './refusal-budget.ts';
import { TokenVerifier } from './tokens.ts';

/** Who made a call: the identity the node established, '' for an anonymous caller. */
export interface Caller {
  readonly identity: string;
}

export const ANONYMOUS: Caller = Object.freeze({ identity: '' });

/** What a call offers to prove who it is: grpc-js's call has both. */
export interface Credentials {
  readonly metadata: Metadata;
  getAuthContext?(): { readonly sslPeerCertificate?: PeerCertificate };
}

export const AUTHORIZATION_KEY = 'authorization';
const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/;

/** What failed authentications are counted and logged by (never with the token). */
export type AuthFailureReport = (reason: string) => void;

/**
 * Establishes the caller of each call and holds the policy. The identity is a bearer
 * token's (`authorization: Bearer …`) when the call sends one and tokens are configured,
 * else the client
 * certificate's subject under mutual TLS (its CN, else its first URI SAN, else its first
 * DNS SAN), else none. With no `auth` section, no call is refused here: a caller without
 * credentials is anonymous and the policy allows everything (dlm stays open, as before).
 * With one, a call that establishes no identity is refused UNAUTHENTICATED, and the
 * policy decides the rest.
 */
export class Authenticator {
  readonly policy: Policy | null;
  /** Each identity's writes refused when applied, bounded; null without a policy (open). */
  readonly refusals: RefusalBudget | null;
  private readonly tokens: TokenVerifier;

  constructor(
    config: AuthConfig | null,
    private readonly reportFailure: AuthFailureReport = () => {},
  ) {
    this.policy = config === null ? null : new Policy(config);
    this.refusals =
      config === null
        ? null
        : new RefusalBudget(config.refusedWritesPerIdentityMax, config.refusedWritesWindowMs);
    this.tokens = new TokenVerifier(config?.tokens ?? [], config?.scryptVerificationsMax);
  }

  /** Whether calls are checked at all; false keeps the open path free of work. */
  get enforcing(): boolean {
    return this.policy !== null;
  }

  /** The caller of a call, or ApiError unauthenticated (a bad token, or none when required). */
  async authenticate(call: Credentials): Promise<Caller> {
    // Without configured tokens a header proves nothing: it is ignored, so an open
    // cluster stays open to a client that sends one anyway.
    const header = this.tokens.size === 0 ? undefined : call.metadata.get(AUTHORIZATION_KEY)[0];
    if (header !== undefined) return this.tokenCaller(header);
    const identity = certificateIdentity(call.getAuthContext?.().sslPeerCertificate);
    if (identity !== null) return this.boundedCaller(identity);
    if (!this.enforcing) return ANONYMOUS;
    this.reportFailure('no credentials');
    throw new ApiError(
      'unauthenticated',
      'this cluster requires an identity: a client certificate or an authorization: Bearer token',
    );
  }

  /** A certificate's subject may be any length; an identity is at most IDENTITY_BYTES_MAX. */
  private boundedCaller(identity: string): Caller {
    const bytes = Buffer.byteLength(identity);
    if (bytes <= IDENTITY_BYTES_MAX) return { identity };
    this.reportFailure('certificate identity too long');
    throw new ApiError(
      'unauthenticated',
      `the client certificate's subject is ${bytes} bytes, over IDENTITY_BYTES_MAX (${IDENTITY_BYTES_MAX})`,
    );
  }

  private async tokenCaller(header: string | Buffer): Promise<Caller> {
    const match = typeof header === 'string' ? BEARER.exec(header) : null;
    const token = match?.[1];
    if (token === undefined) {
      this.reportFailure('malformed authorization header');
      throw new ApiError('unauthenticated', 'authorization metadata must be "Bearer <token>"');
    }
    const identity = await this.tokens.identityOf(token);
    if (identity === null) {
      this.reportFailure('unknown token');
      throw new ApiError('unauthenticated', 'the bearer token matches no entry of auth.tokens');
    }
    return { identity };
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
