/**
 * Rewrites the generated half of docs/api.md from proto/dlm.proto (see
 * src/tools/api-doc.ts) and formats it as biome does; the hand-written half above the
 * marker is kept.
 * Usage: npm run docs:api
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GENERATED_MARKER, renderApiReference } from '../src/tools/api-doc.ts';

const docPath = fileURLToPath(new URL('../docs/api.md', import.meta.url));
const protoPath = fileURLToPath(new URL('../proto/dlm.proto', import.meta.url));
const current = readFileSync(docPath, 'utf8');
const at = current.indexOf(GENERATED_MARKER);
const handWritten = at === -1 ? `${current.trimEnd()}\n\n` : current.slice(0, at);
writeFileSync(docPath, handWritten + renderApiReference(protoPath));
// The repository's formatter aligns markdown tables; `npm run lint` checks docs too.
const biome = fileURLToPath(new URL('../node_modules/.bin/biome', import.meta.url));
execFileSync(biome, ['format', '--write', docPath], { stdio: 'inherit' });
console.log(`wrote ${docPath}`);
