/**
 * The pure cores (DESIGN.md §2, §3): src/raft and src/lock read no clock, draw no
 * randomness of their own, schedule nothing and touch no process or file system, and
 * import only their own folder and src/util. src/util is checked too, because the
 * cores import it: an impure helper there would make them impure.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findPurityViolations, formatViolation } from './purity-check.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const pureFolders = ['src/raft', 'src/lock', 'src/util'] as const;

function listTsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return listTsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

function violationsIn(source: string, file = 'src/raft/example.ts'): string[] {
  return findPurityViolations(file, source).map(formatViolation);
}

describe('pure cores', () => {
  const files = pureFolders.flatMap((folder) => listTsFiles(join(repoRoot, folder)));

  it('finds the sources it checks', () => {
    // src/lock may not exist yet; src/raft and src/util do, so an empty list means the
    // walk is broken and the check below would pass vacuously.
    expect(files.some((f) => relative(repoRoot, f).startsWith(`src${sep}raft${sep}`))).toBe(true);
  });

  it('use no clocks, randomness, timers or process state, and respect import boundaries', () => {
    const violations = files.flatMap((path) => {
      const file = relative(repoRoot, path).split(sep).join('/');
      return findPurityViolations(file, readFileSync(path, 'utf8')).map(formatViolation);
    });
    expect(violations).toEqual([]);
  });
});

describe('findPurityViolations catches', () => {
  it.each([
    ['Date.now', 'const t = Date.now();', 'Date'],
    ['new Date', 'const d = new Date();', 'Date'],
    ['Math.random', 'const r = Math.random();', 'Math.random'],
    ['setTimeout', 'setTimeout(() => tick(), 10);', 'setTimeout'],
    ['setInterval', 'const h = setInterval(tick, 10);', 'setInterval'],
    ['setImmediate', 'setImmediate(flush);', 'setImmediate'],
    ['queueMicrotask', 'queueMicrotask(flush);', 'queueMicrotask'],
    ['performance.now', 'const t = performance.now();', 'performance'],
    ['process.hrtime', 'const t = process.hrtime.bigint();', 'process.hrtime'],
    ['process.env', 'const debug = process.env.DEBUG;', 'process.'],
    ['global crypto', 'const id = crypto.randomUUID();', 'crypto.'],
    ['require', "const fs = require('fs');", 'require('],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a source snippet under test
    ['code inside a template substitution', 'const s = `at ${Date.now()}`;', 'Date'],
  ])('%s', (_name, source, rule) => {
    const found = findPurityViolations('src/raft/example.ts', source);
    expect(found.map((v) => v.rule)).toContain(rule);
    expect(found[0]?.line).toBe(1);
  });

  it.each([
    ['node: builtin', "import { readFileSync } from 'node:fs';", "Node builtin 'node:fs'"],
    ['bare builtin', "import { randomBytes } from 'crypto';", "Node builtin 'crypto'"],
    ['bare builtin subpath', "import { setTimeout } from 'timers/promises';", 'Node builtin'],
    ['package', "import { pack } from 'msgpackr';", "package 'msgpackr'"],
    ['sibling module folder', "import x from '../node/foo.ts';", 'resolves to src/node/foo.ts'],
    ['lock from raft', "import type { X } from '../lock/types.ts';", 'src/lock/types.ts'],
    ['escape via util', "import { y } from '../util/../storage/y.ts';", 'src/storage/y.ts'],
    ['absolute path', "import { z } from '/etc/z.ts';", 'absolute path'],
    ['re-export', "export * from '../transport/index.ts';", 'src/transport/index.ts'],
    ['side-effect import', "import 'node:fs';", "Node builtin 'node:fs'"],
    ['dynamic import', "const m = await import('node:fs');", "Node builtin 'node:fs'"],
    ['multi-line import', "import {\n  a,\n  b,\n} from 'node:fs';", "Node builtin 'node:fs'"],
  ])('import: %s', (_name, source, reason) => {
    const found = violationsIn(source);
    expect(found.join('\n')).toContain(reason);
  });

  it('names the file and line of a violation', () => {
    const source = "import { a } from './a.ts';\n\nconst t = Date.now();\n";
    expect(violationsIn(source)).toEqual(['src/raft/example.ts:3: Date: const t = Date.now();']);
  });

  it('applies the boundary of the file’s own folder', () => {
    const source = "import { apply } from '../raft/log.ts';";
    expect(violationsIn(source, 'src/raft/sub/x.ts')).toEqual([]);
    expect(violationsIn(source, 'src/lock/sub/x.ts')).toHaveLength(0);
    expect(violationsIn(source, 'src/lock/x.ts').join('\n')).toContain('src/raft/log.ts');
  });
});

describe('findPurityViolations accepts', () => {
  it('clean code that mentions the forbidden words only in comments and strings', () => {
    const source = [
      "import { assert } from '../util/assert.ts';",
      "import { type LogIndex, logIndex } from '../util/ids.ts';",
      "import type { Entry } from './types.ts';",
      "import { helper } from './sub/helper.ts';",
      "export * from './ready.ts';",
      '// Never call Date.now(), Math.random(), setTimeout or process.hrtime here.',
      '/* performance, setInterval, setImmediate, queueMicrotask',
      "   and import 'node:fs' are for src/node only. */",
      'export function isUpToDate(updated: number, lastUpdate: number): boolean {',
      "  assert(updated >= 0, 'Date and process.env are not read here');",
      '  const url = "http://example.invalid/a"; // Date after a string with //',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a source snippet under test
      '  const note = `no ${updated} Date in template text`;',
      "  const o = { from: 'n1', to: 'n2' };",
      '  return updated > lastUpdate && url.length > 0 && note.length > 0 && o.to !== o.from;',
      '}',
    ].join('\n');
    expect(violationsIn(source)).toEqual([]);
  });
});
