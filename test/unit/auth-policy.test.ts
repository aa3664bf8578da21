/**
 * The access policy of issue 15: the `auth` section as parsed, the matcher that decides
 * who may do what on which lock names, its digest, and the bearer-token check.
 */

import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ANONYMOUS, Authenticator, certificateIdentity } from '../../src/api/auth/caller.ts';
import { Policy, policyDigest } from '../../src/api/auth/policy.ts';
import {
  newScryptToken,
  sha256Hex,
  TOKEN_ID_HEX,
  TokenVerifier,
  tokenEntry,
} from '../../src/api/auth/tokens.ts';
import { type AuthConfig, IDENTITY_BYTES_MAX } from '../../src/config/auth.ts';
import { ConfigError, parseClusterConfig } from '../../src/config/index.ts';
import { AUTH_FAILURE_REASONS } from '../../src/transport/peer-identity.ts';

const NODES = [
  {
    id: 'n1',
    peerAddress: '127.0.0.1:7001',
    clientAddress: '127.0.0.1:8001',
    metricsAddress: '127.0.0.1:9001',
  },
];

function parseAuth(auth: unknown): AuthConfig {
  const config = parseClusterConfig({ nodes: NODES, dataDir: 'data', auth }, '/tmp');
  if (config.auth === null) throw new Error('no auth section parsed');
  return config.auth;
}

function problemsOf(auth: unknown): readonly string[] {
  try {
    parseClusterConfig({ nodes: NODES, dataDir: 'data', auth }, '/tmp');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

const AUTH = {
  roles: {
    teamA: [{ prefix: 'team-a/', grant: ['read', 'lock'] }],
    reader: [{ prefix: '', grant: ['read'] }],
    ops: [{ prefix: '', grant: ['read', 'lock', 'admin'] }],
    jobs: [{ prefix: 'team-a/jobs/', grant: ['admin'] }],
  },
  identities: { alice: ['teamA'], auditor: ['reader'], root: ['ops'], '*': [], bob: ['jobs'] },
  limits: { sessionsPerIdentityMax: 5, locksHeldPerIdentityMax: 7, waitersPerIdentityMax: 3 },
};

describe('Policy', () => {
  const policy = new Policy(parseAuth(AUTH));

  it('grants a permission on every name under the prefix, and nothing else', () => {
    expect(policy.allows('alice', 'lock', 'team-a/db')).toBe(true);
    expect(policy.allows('alice', 'lock', 'team-a/')).toBe(true);
    expect(policy.allows('alice', 'read', 'team-a/x/y')).toBe(true);
    expect(policy.allows('alice', 'lock', 'team-b/db')).toBe(false);
    expect(policy.allows('alice', 'lock', 'team-a')).toBe(false);
    expect(policy.allows('alice', 'admin', 'team-a/db')).toBe(false);
  });

  it('a read-only identity cannot lock; an unknown or anonymous one can do nothing', () => {
    expect(policy.allows('auditor', 'read', 'anything')).toBe(true);
    expect(policy.allows('auditor', 'lock', 'anything')).toBe(false);
    expect(policy.allowsSome('auditor', 'lock')).toBe(false);
    expect(policy.allowsSome('alice', 'lock')).toBe(true);
    for (const who of ['mallory', ANONYMOUS.identity]) {
      expect(policy.allows(who, 'read', '')).toBe(false);
      expect(policy.allowsSome(who, 'read')).toBe(false);
    }
  });

  it('a Watch prefix is covered only by a grant whose prefix starts it', () => {
    expect(policy.allowsAll('alice', 'read', 'team-a/')).toBe(true);
    expect(policy.allowsAll('alice', 'read', 'team-a/sub')).toBe(true);
    // '' and 'team-' would include names outside team-a/.
    expect(policy.allowsAll('alice', 'read', '')).toBe(false);
    expect(policy.allowsAll('alice', 'read', 'team-')).toBe(false);
  });

  it('cluster-wide admin is admin on the prefix "": a prefix admin is not one', () => {
    expect(policy.allows('root', 'admin', '')).toBe(true);
    expect(policy.allows('bob', 'admin', 'team-a/jobs/1')).toBe(true);
    expect(policy.allows('bob', 'admin', '')).toBe(false);
  });

  it('"*" gives its roles to every authenticated identity, never to the anonymous one', () => {
    const open = new Policy(parseAuth({ ...AUTH, identities: { '*': ['reader'] } }));
    expect(open.allows('anyone', 'read', 'x')).toBe(true);
    expect(open.allows('anyone', 'lock', 'x')).toBe(false);
    expect(open.allows('', 'read', 'x')).toBe(false);
  });

  it('carries the per-identity limits as the quota commands take', () => {
    expect(policy.quota).toEqual({ sessionsMax: 5, locksHeldMax: 7, waitersMax: 3 });
    expect(new Policy(parseAuth({ roles: {} })).quota).toBeNull();
  });

  it('has a digest that ignores the order of the file and changes with any grant', () => {
    const reordered = {
      identities: Object.fromEntries(Object.entries(AUTH.identities).reverse()),
      limits: AUTH.limits,
      roles: Object.fromEntries(Object.entries(AUTH.roles).reverse()),
    };
    expect(policyDigest(parseAuth(reordered))).toBe(policy.digest);
    const widened = {
      ...AUTH,
      roles: { ...AUTH.roles, reader: [{ prefix: '', grant: ['read', 'lock'] }] },
    };
    expect(policyDigest(parseAuth(widened))).not.toBe(policy.digest);
    expect(policy.digest).toMatch(/^[0-9a-f]{12}$/);
  });
});

describe('the auth section', () => {
  it('names each wrong field, and never quotes a token hash', () => {
    const problems = problemsOf({
      tokens: [
        { identity: 'a', sha256: 'my-secret-token' },
        { identity: '', sha256: sha256Hex('x') },
        { identity: 'b' },
      ],
      roles: { r: [{ prefix: 'p/', grant: ['write'] }] },
      identities: { a: ['nope'] },
      limits: { sessionsPerIdentityMax: -1 },
      extra: 1,
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^auth\.tokens\[0\]\.sha256: /),
        expect.stringMatching(/^auth\.tokens\[1\]\.identity: /),
        expect.stringMatching(/^auth\.tokens\[2\]: expected exactly one of sha256 or scrypt/),
        expect.stringMatching(/^auth\.roles\.r\[0\]\.grant\[0\]: expected one of/),
        expect.stringMatching(/^auth\.identities\.a\[0\]: expected a role of auth\.roles/),
        expect.stringMatching(/^auth\.limits\.sessionsPerIdentityMax: /),
        expect.stringMatching(/^auth\.limits\.locksHeldPerIdentityMax: missing/),
        expect.stringMatching(/^auth\.extra: unknown field/),
      ]),
    );
    expect(problems.join('\n')).not.toContain('my-secret-token');
  });

  it('bounds scryptVerificationsMax (1 to 64, default 2)', () => {
    expect(parseAuth({ roles: {} }).scryptVerificationsMax).toBe(2);
    expect(parseAuth({ roles: {}, scryptVerificationsMax: 8 }).scryptVerificationsMax).toBe(8);
    for (const wrong of [0, 65, 1.5, '2']) {
      expect(problemsOf({ roles: {}, scryptVerificationsMax: wrong })).toEqual([
        expect.stringMatching(/^auth\.scryptVerificationsMax: /),
      ]);
    }
  });

  it('bounds the budget of refused writes (default 400 per 10 s), naming the field', () => {
    const defaults = parseAuth({ roles: {} });
    expect(defaults.refusedWritesPerIdentityMax).toBe(400);
    expect(defaults.refusedWritesWindowMs).toBe(10_000);
    const set = parseAuth({
      roles: {},
      refusedWritesPerIdentityMax: 5,
      refusedWritesWindowMs: 500,
    });
    expect([set.refusedWritesPerIdentityMax, set.refusedWritesWindowMs]).toEqual([5, 500]);
    for (const wrong of [0, 1_000_001, 1.5, '2']) {
      expect(problemsOf({ roles: {}, refusedWritesPerIdentityMax: wrong })).toEqual([
        expect.stringMatching(/^auth\.refusedWritesPerIdentityMax: /),
      ]);
    }
    for (const wrong of [0, 3_600_001, -1, null]) {
      expect(problemsOf({ roles: {}, refusedWritesWindowMs: wrong })).toEqual([
        expect.stringMatching(/^auth\.refusedWritesWindowMs: /),
      ]);
    }
    // Nodes that would hold a tenant to different budgets show different digests.
    expect(policyDigest(set)).not.toBe(policyDigest(defaults));
  });

  it('is absent by default: the cluster stays open', () => {
    expect(parseClusterConfig({ nodes: NODES, dataDir: 'data' }, '/tmp').auth).toBeNull();
  });
});

describe('bearer tokens', () => {
  it('match their sha-256 or scrypt entry, and nothing else', async () => {
    const entries = [
      await tokenEntry('ci', 'token-one', 'sha256'),
      await tokenEntry('ops', 'token-two', 'scrypt'),
    ];
    expect(JSON.stringify(entries)).not.toContain('token-one');
    expect(JSON.stringify(entries)).not.toContain('token-two');
    const verifier = new TokenVerifier(entries);
    expect(await verifier.identityOf('token-one')).toBe('ci');
    expect(await verifier.identityOf('token-two')).toBe('ops');
    // Remembered (by digest) after the first scrypt check: same answer.
    expect(await verifier.identityOf('token-two')).toBe('ops');
    expect(await verifier.identityOf('token-three')).toBeNull();
    expect(await verifier.identityOf('token-one ')).toBeNull();
  });

  it('checks at most scryptVerificationsMax tokens with scrypt at once, and one token once', async () => {
    const verifier = new TokenVerifier([await tokenEntry('ops', 'token-two', 'scrypt')], 1);
    const first = verifier.identityOf('wrong-one');
    const again = verifier.identityOf('wrong-one');
    expect(verifier.scryptInFlight).toBe(1);
    await expect(verifier.identityOf('wrong-two')).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: expect.stringContaining('auth.scryptVerificationsMax (1)'),
    });
    expect(await first).toBeNull();
    expect(await again).toBeNull();
    // A wrong token is remembered: asked again, it runs no scrypt.
    const repeated = verifier.identityOf('wrong-one');
    expect(verifier.scryptInFlight).toBe(0);
    expect(await repeated).toBeNull();
    expect(await verifier.identityOf('token-two')).toBe('ops');
  });

  it('a token that names its entry (<16 hex of salt>.) is checked against that entry only', async () => {
    const made = await newScryptToken('ops');
    expect(made.token).toMatch(new RegExp(`^[0-9a-f]{${TOKEN_ID_HEX}}\\.`));
    const id = made.token.slice(0, TOKEN_ID_HEX);
    // Another entry's token that happens to start with ops's id: not tried against it.
    const lookalike = `${id}.chosen-by-a-person`;
    const entries = [
      await tokenEntry('ci', lookalike, 'scrypt'),
      await tokenEntry('old', 'token-without-id', 'scrypt'),
      made.entry,
    ];
    const verifier = new TokenVerifier(entries);
    expect(await verifier.identityOf(made.token)).toBe('ops');
    expect(await verifier.identityOf(lookalike)).toBeNull();
    // Tokens made before ids still match, whichever entry is theirs.
    expect(await verifier.identityOf('token-without-id')).toBe('old');
  });

  it('an Authenticator takes a token over a certificate, and refuses a call with neither', async () => {
    const auth = new Authenticator(
      parseAuth({ tokens: [await tokenEntry('ci', 'tok', 'sha256')], roles: {} }),
    );
    const call = (header: string | null, cn: string | null) => {
      const metadata = new Metadata();
      if (header !== null) metadata.set('authorization', header);
      return {
        metadata,
        getAuthContext: () =>
          cn === null ? {} : { sslPeerCertificate: { subject: { CN: cn } } as never },
      };
    };
    expect(await auth.authenticate(call('Bearer tok', 'svc'))).toEqual({ identity: 'ci' });
    expect(await auth.authenticate(call(null, 'svc'))).toEqual({ identity: 'svc' });
    await expect(auth.authenticate(call(null, null))).rejects.toMatchObject({
      code: 'unauthenticated',
    });
    await expect(auth.authenticate(call('Bearer nope', 'svc'))).rejects.toMatchObject({
      code: 'unauthenticated',
    });
    await expect(auth.authenticate(call('Basic tok', null))).rejects.toMatchObject({
      code: 'unauthenticated',
    });
    // Without a policy, a caller with no credentials is anonymous, not refused; with no
    // tokens configured a header is ignored.
    expect(await new Authenticator(null).authenticate(call(null, null))).toEqual(ANONYMOUS);
    expect(await new Authenticator(null).authenticate(call('Bearer x', null))).toEqual(ANONYMOUS);
    expect(await new Authenticator(null).authenticate(call('Bearer x', 'svc'))).toEqual({
      identity: 'svc',
    });
  });
});

describe('certificateIdentity', () => {
  it('is the CN, else the first URI SAN, else the first DNS SAN', () => {
    const cert = (subject: object, subjectaltname?: string) =>
      ({ subject, ...(subjectaltname === undefined ? {} : { subjectaltname }) }) as never;
    expect(certificateIdentity(cert({ CN: 'alice' }, 'DNS:a.example'))).toBe('alice');
    expect(certificateIdentity(cert({}, 'DNS:a.example, URI:spiffe://dlm/bob'))).toBe(
      'spiffe://dlm/bob',
    );
    expect(certificateIdentity(cert({}, 'IP Address:127.0.0.1, DNS:c.example'))).toBe('c.example');
    expect(certificateIdentity(cert({}))).toBeNull();
    expect(certificateIdentity(undefined)).toBeNull();
  });
});

/** A call as grpc-js hands it to the Authenticator, from one address. */
function callWith(header: string | null, cn: string | null = null) {
  const metadata = new Metadata();
  if (header !== null) metadata.set('authorization', header);
  return {
    metadata,
    getAuthContext: () =>
      cn === null ? {} : { sslPeerCertificate: { subject: { CN: cn } } as never },
    getPeer: () => '192.0.2.7:40123',
  };
}

describe('a policy replaced on SIGHUP', () => {
  it('is in force for the next check: new grants and tokens admitted, removed ones refused', async () => {
    const before = parseAuth({
      tokens: [await tokenEntry('ci', 'ci-token', 'sha256')],
      roles: AUTH.roles,
      identities: { alice: ['teamA'], ci: ['teamA'] },
    });
    const auth = new Authenticator(before);
    const digest = auth.policy?.digest;
    expect(auth.policy?.allows('alice', 'lock', 'team-a/x')).toBe(true);
    expect(auth.policy?.allows('carol', 'lock', 'team-a/x')).toBe(false);
    expect(await auth.authenticate(callWith('Bearer ci-token'))).toEqual({ identity: 'ci' });
    expect(auth.generation).toBe(0);

    const policy = auth.replace(
      parseAuth({
        tokens: [await tokenEntry('deploy', 'deploy-token', 'sha256')],
        roles: AUTH.roles,
        identities: { carol: ['teamA'], deploy: ['teamA'] },
      }),
    );
    expect(auth.policy).toBe(policy);
    expect(policy.digest).not.toBe(digest);
    expect(auth.generation).toBe(1);
    expect(auth.policy?.allows('alice', 'lock', 'team-a/x')).toBe(false);
    expect(auth.policy?.allows('carol', 'lock', 'team-a/x')).toBe(true);
    expect(await auth.authenticate(callWith('Bearer deploy-token'))).toEqual({
      identity: 'deploy',
    });
    await expect(auth.authenticate(callWith('Bearer ci-token'))).rejects.toMatchObject({
      code: 'unauthenticated',
    });
  });

  it('cannot be given to an Authenticator that started open: that needs a restart', () => {
    expect(() => new Authenticator(null).replace(parseAuth({ roles: {} }))).toThrow(
      'started without a policy',
    );
  });

  it('keeps the scrypt tokens verified against entries it still has, for the same identity only', async () => {
    const kept = await tokenEntry('ops', 'kept-token', 'scrypt');
    const moved = await tokenEntry('ci', 'moved-token', 'scrypt');
    const old = new TokenVerifier([kept, moved]);
    expect(await old.identityOf('kept-token')).toBe('ops');
    expect(await old.identityOf('moved-token')).toBe('ci');
    // The same hash, now another identity's: verified again, never taken on trust.
    const renamed = { ...moved, identity: 'deploy' };
    const next = new TokenVerifier([kept, renamed], 2, old);
    const keptAnswer = next.identityOf('kept-token');
    expect(next.scryptInFlight, 'a kept token runs no scrypt').toBe(0);
    expect(await keptAnswer).toBe('ops');
    const movedAnswer = next.identityOf('moved-token');
    expect(next.scryptInFlight, 'a token whose entry changed is checked again').toBe(1);
    expect(await movedAnswer).toBe('deploy');
    // An entry that is gone takes its tokens with it.
    expect(await new TokenVerifier([renamed], 2, next).identityOf('kept-token')).toBeNull();
  });
});

describe('refused authentications', () => {
  it('are reported with a reason per kind and the caller address, never the token', async () => {
    const reports: [string, string, string][] = [];
    const auth = new Authenticator(
      parseAuth({ tokens: [await tokenEntry('ci', 'real-token', 'sha256')], roles: {} }),
      (peer, reason, detail) => reports.push([peer, reason, detail]),
    );
    for (const refused of [
      callWith(null),
      callWith('Basic guessed-secret'),
      callWith('Bearer guessed-secret'),
      callWith(null, 'x'.repeat(IDENTITY_BYTES_MAX + 1)),
    ]) {
      await expect(auth.authenticate(refused)).rejects.toMatchObject({ code: 'unauthenticated' });
    }
    expect(await auth.authenticate(callWith('Bearer real-token'))).toEqual({ identity: 'ci' });
    expect(reports.map(([peer, reason]) => [peer, reason])).toEqual([
      ['192.0.2.7:40123', 'no_credentials'],
      ['192.0.2.7:40123', 'malformed_authorization'],
      ['192.0.2.7:40123', 'unknown_token'],
      ['192.0.2.7:40123', 'identity_too_long'],
    ]);
    expect(JSON.stringify(reports)).not.toContain('guessed-secret');
    expect(AUTH_FAILURE_REASONS).toEqual(
      expect.arrayContaining(reports.map(([, reason]) => reason)),
    );
  });
});
