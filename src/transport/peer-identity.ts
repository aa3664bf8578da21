import type { PeerCertificate } from 'node:tls';
import * as tls from 'node:tls';

/**
 * Which node a certificate speaks for, under mutual TLS. A node's certificate carries
 * the URI SAN dlm-node://ID (see `dlm certs init`); a peer is believed to be node ID only
 * if its certificate names that id. The CN is not used: lock clients' certificates name
 * the client in the CN, and a client named "n1" must not pass for node n1. A certificate
 * without any dlm-node URI is a client's, and the peer port refuses it.
 */
export const NODE_URI_SCHEME = 'dlm-node://';

export function nodeCertificateUri(id: string): string {
  return `${NODE_URI_SCHEME}${id}`;
}

/**
 * Why a peer or a client was refused; the label of dlm_auth_failures_total. The first
 * three are the transport's (every port), not_a_member the node's (peer port), the
 * others the client API's, under an `auth` section.
 */
export type AuthFailureReason =
  /** The TLS handshake failed: no certificate, another CA, expired, plaintext on a TLS port. */
  | 'tls_handshake'
  /** A certificate of the cluster's CA without a node id: a lock client's on the peer port. */
  | 'not_a_node'
  /** A node certificate, but of another node than the one the peer claims to be. */
  | 'wrong_node_id'
  /**
   * A forwarded write from a node the leader does not count among the members: a removed
   * node, a certificate issued for an id never added, a stranger that learned the cluster
   * id (plaintext peers), or, briefly, a member the leader has not applied yet (see
   * WriteForwarding.countsAsMember).
   */
  | 'not_a_member'
  /** A call with neither a client certificate nor a bearer token. */
  | 'no_credentials'
  /** `authorization` metadata that is not `Bearer <token>`. */
  | 'malformed_authorization'
  /** A bearer token that matches no entry of auth.tokens. */
  | 'unknown_token'
  /** A client certificate whose subject is longer than an identity may be. */
  | 'identity_too_long';

export const AUTH_FAILURE_REASONS: readonly AuthFailureReason[] = [
  'tls_handshake',
  'not_a_node',
  'wrong_node_id',
  'not_a_member',
  'no_credentials',
  'malformed_authorization',
  'unknown_token',
  'identity_too_long',
];

/** Reports a refused peer or client: who (address or claimed id), why, and a detail without secrets. */
export type AuthFailureListener = (peer: string, reason: AuthFailureReason, detail: string) => void;

/** The node ids a certificate names (usually one), from its dlm-node URI SANs. */
export function certificateNodeIds(
  certificate: { readonly subjectaltname?: string } | null | undefined,
): string[] {
  const names = certificate?.subjectaltname;
  if (typeof names !== 'string') return [];
  const ids: string[] = [];
  // Node writes "URI:dlm-node://n1, IP Address:127.0.0.1"; a value holding a comma or a
  // quote is JSON-quoted, and no valid node id needs that, so quoted ones are skipped.
  for (const entry of names.split(', ')) {
    const prefix = `URI:${NODE_URI_SCHEME}`;
    if (entry.startsWith(prefix)) ids.push(entry.slice(prefix.length));
  }
  return ids;
}

export interface IdentityProblem {
  readonly reason: 'not_a_node' | 'wrong_node_id';
  readonly detail: string;
}

/** null when `certificate` names node `claimedId`; else what is wrong with it. */
export function peerIdentityProblem(
  certificate: PeerCertificate | null | undefined,
  claimedId: string,
): IdentityProblem | null {
  const ids = certificateNodeIds(certificate);
  if (ids.includes(claimedId)) return null;
  const subject = describeCertificate(certificate);
  if (ids.length === 0) {
    return {
      reason: 'not_a_node',
      detail: `claims to be node ${claimedId}, but its certificate (${subject}) names no node (no ${NODE_URI_SCHEME} URI SAN): not a node certificate`,
    };
  }
  return {
    reason: 'wrong_node_id',
    detail: `claims to be node ${claimedId}, but its certificate (${subject}) is node ${ids.join(', ')}'s`,
  };
}

/**
 * For the dialling side: the usual host-name check, then that the server's certificate
 * names the node we meant to reach (a node certificate of another member, or a stolen
 * one of a removed node moved to this address, is refused).
 */
export function checkServerNode(
  expectedId: string,
): (host: string, certificate: PeerCertificate) => Error | undefined {
  return (host, certificate) => {
    const hostProblem = tls.checkServerIdentity(host, certificate);
    if (hostProblem !== undefined) return hostProblem;
    const problem = peerIdentityProblem(certificate, expectedId);
    return problem === null ? undefined : new Error(`peer ${problem.detail}`);
  };
}

/** Subject CN and serial: enough to find the certificate, nothing secret. */
export function describeCertificate(certificate: PeerCertificate | null | undefined): string {
  if (certificate === null || certificate === undefined || !certificate.subject) {
    return 'no certificate';
  }
  const cn = certificate.subject.CN;
  return `CN=${Array.isArray(cn) ? cn.join('+') : (cn ?? '?')}, serial ${certificate.serialNumber ?? '?'}`;
}

/** The sender a decoded peer message names (anything may have been decoded). */
export function claimedSender(message: unknown): unknown {
  if (typeof message !== 'object' || message === null) return undefined;
  const body = message as { kind?: unknown; from?: unknown; message?: { from?: unknown } };
  return body.kind === 'raft' ? body.message?.from : body.from;
}
