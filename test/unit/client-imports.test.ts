/**
 * DESIGN §2: `client` knows only the proto. src/client imports its own folder, Node
 * built-ins and grpc-js/proto-loader, never the server's modules, so it can be lifted
 * out as a package and cannot depend on server internals by accident.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLIENT_DIR = fileURLToPath(new URL('../../src/client/', import.meta.url));
const ALLOWED = [/^\.\/[^/]+\.ts$/, /^node:/, /^@grpc\/grpc-js$/, /^@grpc\/proto-loader$/];

function importsOf(source: string): string[] {
  const pattern = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g;
  return [...source.matchAll(pattern)].map((match) => match[1] ?? '');
}

function forbiddenImports(source: string): string[] {
  return importsOf(source).filter(
    (specifier) => !ALLOWED.some((allowed) => allowed.test(specifier)),
  );
}

describe('src/client knows only the proto', () => {
  it('imports nothing of the server', () => {
    const files = readdirSync(CLIENT_DIR).filter((name) => name.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(2);
    const found = files.flatMap((name) =>
      forbiddenImports(readFileSync(join(CLIENT_DIR, name), 'utf8')).map(
        (spec) => `${name}: ${spec}`,
      ),
    );
    expect(found).toEqual([]);
  });

  it('the check catches a server import, static or dynamic', () => {
    expect(
      forbiddenImports(
        [
          "import { ApiError } from '../api/errors.ts';",
          "const node = await import('../node/node.ts');",
          "import type { NodeId } from '../util/ids.ts';",
          "import 'level';",
        ].join('\n'),
      ),
    ).toEqual(['../api/errors.ts', '../node/node.ts', '../util/ids.ts', 'level']);
  });
});
