import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { TokenEntry } from '../../config/auth.ts';

/** scrypt's cost: about 50 ms of one core per check, paid once per token (see TokenVerifier). */
const SCRYPT_OPTIONS = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const SCRYPT_HASH_BYTES = 32;
/** Verified tokens remembered (by digest, never in clear); past it the memory starts over. */
const VERIFIED_MAX = 4_096;

export function sha256Hex(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A new random token (256 bits, base64url): what `dlm auth token` hands an operator. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The config entry for `token` of `identity`, hashed with `kind`. */
export async function tokenEntry(
  identity: string,
  token: string,
  kind: 'sha256' | 'scrypt',
): Promise<TokenEntry> {
  if (kind === 'sha256') return { identity, sha256: sha256Hex(token) };
  const salt = randomBytes(16);
  const hash = await scryptHash(token, salt);
  return { identity, scrypt: `${salt.toString('hex')}:${hash.toString('hex')}` };
}

function scryptHash(token: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(token, salt, SCRYPT_HASH_BYTES, SCRYPT_OPTIONS, (error, hash) =>
      error === null ? resolve(hash) : reject(error),
    );
  });
}

/**
 * Checks bearer tokens against the config's hashes. sha256 entries are looked up by the
 * token's digest; scrypt entries are tried one by one (off the event loop) and a match
 * is remembered by the token's sha-256, so a client pays scrypt once, not per call.
 * Nothing here keeps or logs a token in clear.
 */
export class TokenVerifier {
  private readonly bySha256 = new Map<string, string>();
  private readonly scryptEntries: { identity: string; salt: Buffer; hash: Buffer }[] = [];
  private readonly verified = new Map<string, string>();

  constructor(entries: readonly TokenEntry[]) {
    for (const entry of entries) {
      if ('sha256' in entry) {
        this.bySha256.set(entry.sha256, entry.identity);
        continue;
      }
      const [salt = '', hash = ''] = entry.scrypt.split(':');
      this.scryptEntries.push({
        identity: entry.identity,
        salt: Buffer.from(salt, 'hex'),
        hash: Buffer.from(hash, 'hex'),
      });
    }
  }

  get size(): number {
    return this.bySha256.size + this.scryptEntries.length;
  }

  /** The identity of `token`, or null when no entry matches. */
  async identityOf(token: string): Promise<string | null> {
    const digest = sha256Hex(token);
    const known = this.bySha256.get(digest) ?? this.verified.get(digest);
    if (known !== undefined) return known;
    for (const entry of this.scryptEntries) {
      const hash = await scryptHash(token, entry.salt);
      if (hash.length === entry.hash.length && timingSafeEqual(hash, entry.hash)) {
        if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
        this.verified.set(digest, entry.identity);
        return entry.identity;
      }
    }
    return null;
  }
}
