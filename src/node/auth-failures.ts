import client from 'prom-client';
import { AUTH_FAILURE_REASONS, type AuthFailureReason } from '../transport/peer-identity.ts';

/**
 * Refused authentications on every port of a node (TLS handshakes on the client and
 * peer ports, peer certificates that do not name the sender, forwarded writes from
 * non-members, API calls the auth section does not admit): counted by reason for
 * dlm_auth_failures_total, and each handed to `log` (rate-limited by the caller, as a
 * hostile client can fail many times a second). Nothing secret is passed: addresses,
 * claimed ids, certificate subjects and serials, the TLS library's reason, why a call
 * was refused, never a token.
 */
export class AuthFailures {
  private readonly counts = new Map<AuthFailureReason, number>(
    AUTH_FAILURE_REASONS.map((reason) => [reason, 0]),
  );

  constructor(
    private readonly log: (
      fields: { peer: string; reason: AuthFailureReason; port: string },
      detail: string,
    ) => void,
  ) {}

  /** A listener for one port ('client', 'peer'), as transports and the API take it. */
  listener(port: string): (peer: string, reason: AuthFailureReason, detail: string) => void {
    return (peer, reason, detail) => {
      this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
      this.log({ peer, reason, port }, detail);
    };
  }

  count(reason: AuthFailureReason): number {
    return this.counts.get(reason) ?? 0;
  }

  register(registry: client.Registry): void {
    const counts = this.counts;
    new client.Counter({
      name: 'dlm_auth_failures_total',
      help: 'Refused authentications: TLS handshakes (tls_handshake), lock-client certificates on the peer port (not_a_node), peers whose certificate names another node (wrong_node_id), forwarded writes from a node that is not a member (not_a_member); under an auth section, API calls without credentials (no_credentials), with a malformed authorization (malformed_authorization) or an unknown bearer token (unknown_token), or a certificate subject too long for an identity (identity_too_long).',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, count] of counts) this.labels({ reason }).inc(count);
      },
    });
  }
}
