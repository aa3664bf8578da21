import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GENERATED_MARKER, renderApiReference } from '../../src/tools/api-doc.ts';

/**
 * docs/api.md's reference half is generated from proto/dlm.proto: this fails when the
 * proto changed (an RPC, a field, a comment) and `npm run docs:api` was not run. The
 * comparison ignores layout (biome aligns the tables).
 */
const PROTO = fileURLToPath(new URL('../../proto/dlm.proto', import.meta.url));
const DOC = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');

/** The text without the formatter's layout: runs of spaces, and table rule widths. */
function normalized(markdown: string): string {
  return markdown.replace(/-{3,}/g, '---').replace(/\s+/g, ' ').trim();
}

describe('docs/api.md', () => {
  it('holds the reference generated from proto/dlm.proto, as it is now (npm run docs:api)', () => {
    const at = DOC.indexOf(GENERATED_MARKER);
    expect(at, 'docs/api.md has the generated marker').toBeGreaterThan(0);
    expect(normalized(DOC.slice(at))).toBe(normalized(renderApiReference(PROTO)));
  });

  it('names every RPC of both services and every field of the messages the RPCs use', () => {
    const reference = renderApiReference(PROTO);
    for (const rpc of [
      'Lock.Acquire',
      'Lock.ListLocks',
      'Lock.ListSessions',
      'Cluster.RevokeLock',
    ]) {
      expect(reference).toContain(`### ${rpc}\n`);
    }
    expect(reference).toMatch(/\| `held_ms` \| 5 \| `uint64` \| Added\. How long the grant/);
    expect(reference).toMatch(/\| `limit` \| 2 \| `uint32` \|/);
  });
});
