/**
 * Review of sec-authz (issue 15), item 3: an identity has a byte limit where the config
 * names it (IDENTITY_BYTES_MAX, 256 bytes, "an identity goes into ... every session's
 * log entry"), but not where it comes from a client certificate, nor in the replicated
 * state machine. A certificate's URI SAN (or CN) of any length becomes the identity,
 * is written into every OpenSession/KeepAlive/Acquire/Release/CloseSession entry, kept
 * in every session record and snapshot, and in the OpenSession dedupe key (whose size
 * the state machine otherwise bounds by requestIdBytesMax).
 *
 * These tests FAILED on sec-authz as reviewed (88423af); they pass since authz-fix.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/api/auth/caller.ts';
import { IDENTITY_BYTES_MAX } from '../../src/config/auth.ts';
import { Log } from '../unit/lock-log.ts';

/** A client certificate (self-signed: only its parsing is under test) with a long URI SAN. */
function longSanCertificate(dir: string, uriBytes: number): { key: Buffer; cert: Buffer } {
  const uri = `urn:dlm:${'x'.repeat(uriBytes)}`;
  writeFileSync(
    join(dir, 'san.cnf'),
    `[req]\ndistinguished_name = dn\n[dn]\n[ext]\nsubjectAltName = @alt\nextendedKeyUsage = clientAuth\n[alt]\nURI.1 = ${uri}\n`,
  );
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
      '-days',
      '1',
      '-subj',
      '/O=tenant',
      '-config',
      'san.cnf',
      '-extensions',
      'ext',
    ],
    { cwd: dir, stdio: 'ignore' },
  );
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
}

/** The peer certificate a TLS server sees from a client presenting `client` (a real handshake). */
async function peerCertificateOf(
  server: { key: Buffer; cert: Buffer },
  client: { key: Buffer; cert: Buffer },
): Promise<tls.PeerCertificate> {
  let resolveCert: (cert: tls.PeerCertificate) => void = () => {};
  const seen = new Promise<tls.PeerCertificate>((resolve) => {
    resolveCert = resolve;
  });
  const listener = tls.createServer(
    { ...server, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      resolveCert(socket.getPeerCertificate());
      socket.end();
    },
  );
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as AddressInfo;
  const socket = tls.connect({ port, host: '127.0.0.1', ...client, rejectUnauthorized: false });
  socket.on('error', () => {});
  try {
    return await seen;
  } finally {
    socket.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}

describe('review sec-authz: identity byte bounds', () => {
  it('the state machine refuses an OpenSession whose identity is far past any identity limit', () => {
    const log = new Log();
    const identity = 'i'.repeat(1024 * 1024);
    const result = log.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: 'r1',
      identity,
    });
    // Observed on the branch: SessionOpened, a 1 MiB identity kept in the session, in
    // the OpenSession dedupe key and in every snapshot.
    expect(result).toMatchObject({ type: 'Rejected', code: 'invalidArgument' });
    expect(JSON.stringify(result)).toContain('IDENTITY_BYTES_MAX (256)');
  });

  it('the state machine takes an identity of exactly IDENTITY_BYTES_MAX bytes', () => {
    const log = new Log();
    const result = log.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: 'r1',
      identity: 'i'.repeat(IDENTITY_BYTES_MAX),
    });
    expect(result.type).toBe('SessionOpened');
  });

  it('a client certificate whose subject is longer than IDENTITY_BYTES_MAX is not taken as an identity', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dlm-review-san-'));
    try {
      const client = longSanCertificate(dir, 16 * 1024);
      const serverDir = mkdtempSync(join(dir, 'server-'));
      const server = longSanCertificate(serverDir, 8);
      const certificate = await peerCertificateOf(server, client);
      // Open cluster under mutual TLS (no auth section): sessions are owned by the subject.
      const auth = new Authenticator(null);
      const outcome = await auth
        .authenticate({
          metadata: new Metadata(),
          getAuthContext: () => ({ sslPeerCertificate: certificate }),
        })
        .then(
          (caller) => ({ identityBytes: Buffer.byteLength(caller.identity) }),
          (error: unknown) => ({ refused: String(error) }),
        );
      // Observed on the branch: { identityBytes: 16392 }: the whole SAN is the identity,
      // written into every command of that caller's sessions. Now refused, naming the limit.
      expect(outcome).toEqual({ refused: expect.stringContaining('IDENTITY_BYTES_MAX (256)') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
