/**
 * Rewrites the generated half of docs/api.md from proto/dlm.proto (see
 * src/tools/api-doc.ts); the hand-written half above the marker is kept.
 * Usage: npm run docs:api
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GENERATED_MARKER, renderApiReference } from '../src/tools/api-doc.ts';

const docPath = fileURLToPath(new URL('../docs/api.md', import.meta.url));
const protoPath = fileURLToPath(new URL('../proto/dlm.proto', import.meta.url));
const current = readFileSync(docPath, 'utf8');
const at = current.indexOf(GENERATED_MARKER);
const handWritten = at === -1 ? `${current.trimEnd()}\n\n` : current.slice(0, at);
writeFileSync(docPath, handWritten + renderApiReference(protoPath));
console.log(`wrote ${docPath}`);
