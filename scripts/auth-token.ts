/**
 * Makes a bearer token for an identity and prints the `auth.tokens` entry that admits
 * it: the token goes to the client (DLM_TOKEN, or ConnectionOptions.token), the entry,
 * which holds only its hash, into cluster.config.json of every node.
 *
 *   node --import tsx scripts/auth-token.ts --identity NAME [--scrypt]
 *
 * sha-256 (the default) suits the random 256-bit tokens made here; --scrypt costs each
 * node about 50 ms once per token and client, and suits tokens a person chose.
 */
import { parseArgs } from 'node:util';
import { newToken, tokenEntry } from '../src/api/auth/tokens.ts';

const { values } = parseArgs({
  options: { identity: { type: 'string' }, scrypt: { type: 'boolean', default: false } },
});
if (values.identity === undefined || values.identity === '') {
  process.stderr.write('usage: auth-token.ts --identity NAME [--scrypt]\n');
  process.exit(2);
}
const token = newToken();
const entry = await tokenEntry(values.identity, token, values.scrypt ? 'scrypt' : 'sha256');
process.stdout.write(`token (give it to the client, e.g. DLM_TOKEN): ${token}\n`);
process.stdout.write(`auth.tokens entry: ${JSON.stringify(entry)}\n`);
