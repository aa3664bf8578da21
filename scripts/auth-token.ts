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
import { newScryptToken, newToken, tokenEntry } from '../src/api/auth/tokens.ts';

const { values } = parseArgs({
  options: { identity: { type: 'string' }, scrypt: { type: 'boolean', default: false } },
});
if (values.identity === undefined || values.identity === '') {
  process.stderr.write('usage: auth-token.ts --identity NAME [--scrypt]\n');
  process.exit(2);
}
// A scrypt token starts with its entry's id, so a node checks it against that entry only.
async function made(identity: string, scrypt: boolean) {
  if (scrypt) return newScryptToken(identity);
  const token = newToken();
  return { token, entry: await tokenEntry(identity, token, 'sha256') };
}
const { token, entry } = await made(values.identity, values.scrypt);
process.stdout.write(`token (give it to the client, e.g. DLM_TOKEN): ${token}\n`);
process.stdout.write(`auth.tokens entry: ${JSON.stringify(entry)}\n`);
