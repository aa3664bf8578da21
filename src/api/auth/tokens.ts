import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { SCRYPT_VERIFICATIONS_DEFAULT, type TokenEntry } from '../../config/auth.ts';
import { ApiError } from '../errors.ts';

/** scrypt's cost: about 50 ms of one core per check, paid once per token (see TokenVerifier). */
const SCRYPT_OPTIONS = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const SCRYPT_HASH_BYTES = 32;
/** Verified tokens remembered (by digest, never in clear); past it the oldest goes. */
const VERIFIED_MAX = 4_096;

export function sha256Hex(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A new random token (256 bits, base64url): what `dlm auth token` hands an operator. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Hex characters of a scrypt entry's salt that a token may carry in front, as
 * `<16 hex>.<secret>`, to name the one entry to check (see TokenVerifier).
 */
export const TOKEN_ID_HEX = 16;
const TOKEN_ID = new RegExp(`^([0-9a-f]{${TOKEN_ID_HEX}})\\.`);

/**
 * A new token for a scrypt entry and that entry: the token starts with its entry's id
 * (the salt's first TOKEN_ID_HEX hex digits) so a node runs scrypt once, not once per entry.
 */
export async function newScryptToken(
  identity: string,
): Promise<{ token: string; entry: TokenEntry }> {
  const salt = randomBytes(16);
  const token = `${salt.toString('hex').slice(0, TOKEN_ID_HEX)}.${newToken()}`;
  const hash = await scryptHash(token, salt);
  return { token, entry: { identity, scrypt: `${salt.toString('hex')}:${hash.toString('hex')}` } };
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

interface ScryptEntry {
  readonly identity: string;
  /** As the config writes it, `saltHex:hashHex`: what tells two entries apart across a reload. */
  readonly text: string;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/** Tokens that matched no entry, remembered (by sha-256) so a repeat costs no scrypt. */
const REFUSED_MAX = 4_096;

/**
 * Checks bearer tokens against the config's hashes. sha256 entries are looked up by the
 * token's digest. scrypt entries cost about 50 ms of a libuv pool thread each, the pool
 * LevelDB's writes and fsyncs run on, so: a token that starts with an entry's id
 * (`<16 hex of its salt>.`) is checked against that entry only, else against each in
 * turn (tokens made before ids); at most `scryptVerificationsMax` tokens are checked at
 * once, past it a call is refused RESOURCE_EXHAUSTED (with dlm-retry-after-ms) before any
 * scrypt runs; one token asked for by several calls at once is checked once; and both
 * outcomes are remembered by the token's sha-256 (bounded), so a client pays scrypt once
 * and a repeated wrong token costs nothing. Nothing here keeps or logs a token in clear.
 *
 * A verifier built on a reload (SIGHUP) is given the one it replaces: it keeps the
 * tokens that one verified against an entry the new config still has, for the same
 * identity, so a reload costs the clients of a busy cluster no scrypt (and so no
 * RESOURCE_EXHAUSTED). Refused tokens are not kept: a new entry may match one.
 */
export class TokenVerifier {
  private readonly bySha256 = new Map<string, string>();
  private readonly scryptEntries: ScryptEntry[] = [];
  private readonly byTokenId = new Map<string, ScryptEntry>();
  private readonly verified = new Map<string, ScryptEntry>();
  private readonly refused = new Map<string, true>();
  private readonly checking = new Map<string, Promise<string | null>>();

  constructor(
    entries: readonly TokenEntry[],
    private readonly scryptVerificationsMax = SCRYPT_VERIFICATIONS_DEFAULT,
    replaced: TokenVerifier | null = null,
  ) {
    for (const entry of entries) {
      if ('sha256' in entry) {
        this.bySha256.set(entry.sha256, entry.identity);
        continue;
      }
      const [salt = '', hash = ''] = entry.scrypt.split(':');
      const scryptEntry = {
        identity: entry.identity,
        text: entry.scrypt,
        salt: Buffer.from(salt, 'hex'),
        hash: Buffer.from(hash, 'hex'),
      };
      this.scryptEntries.push(scryptEntry);
      this.byTokenId.set(salt.slice(0, TOKEN_ID_HEX), scryptEntry);
    }
    if (replaced !== null) this.keepVerified(replaced);
  }

  private keepVerified(replaced: TokenVerifier): void {
    const byText = new Map(this.scryptEntries.map((entry) => [entry.text, entry]));
    for (const [digest, old] of replaced.verified) {
      const entry = byText.get(old.text);
      if (entry?.identity === old.identity) this.verified.set(digest, entry);
    }
  }

  get size(): number {
    return this.bySha256.size + this.scryptEntries.length;
  }

  /** Tokens being checked with scrypt now (at most scryptVerificationsMax). */
  get scryptInFlight(): number {
    return this.checking.size;
  }

  /**
   * The identity of `token`, or null when no entry matches. Throws ApiError
   * RESOURCE_EXHAUSTED when it would need scrypt and scryptVerificationsMax are running.
   */
  async identityOf(token: string): Promise<string | null> {
    const digest = sha256Hex(token);
    const known = this.bySha256.get(digest) ?? this.verified.get(digest)?.identity;
    if (known !== undefined) return known;
    if (this.scryptEntries.length === 0 || this.refused.has(digest)) return null;
    const running = this.checking.get(digest);
    if (running !== undefined) return running;
    if (this.checking.size >= this.scryptVerificationsMax) {
      throw new ApiError(
        'RESOURCE_EXHAUSTED',
        `auth.scryptVerificationsMax (${this.scryptVerificationsMax}) bearer tokens are being checked with scrypt already`,
      );
    }
    const check = this.check(token, digest).finally(() => this.checking.delete(digest));
    this.checking.set(digest, check);
    return check;
  }

  private async check(token: string, digest: string): Promise<string | null> {
    const id = TOKEN_ID.exec(token)?.[1];
    const named = id === undefined ? undefined : this.byTokenId.get(id);
    for (const entry of named === undefined ? this.scryptEntries : [named]) {
      const hash = await scryptHash(token, entry.salt);
      if (hash.length === entry.hash.length && timingSafeEqual(hash, entry.hash)) {
        remember(this.verified, digest, entry, VERIFIED_MAX);
        return entry.identity;
      }
    }
    remember(this.refused, digest, true, REFUSED_MAX);
    return null;
  }
}

/** Adds to a bounded memory: past `max` the oldest entry goes. */
function remember<T>(memory: Map<string, T>, key: string, value: T, max: number): void {
  if (memory.size >= max) {
    const oldest = memory.keys().next().value;
    if (oldest !== undefined) memory.delete(oldest);
  }
  memory.set(key, value);
}
