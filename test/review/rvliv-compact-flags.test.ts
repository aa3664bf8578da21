/**
 * Review of f8ae835 (collectGarbage sets --compact-on-every-full-gc around gc() and
 * --no-compact-on-every-full-gc after). Two ways it aborts the process, uncatchably,
 * where the collection before f8ae835 ran and the process lived:
 *
 * 1. `--abort-on-contradictory-flags` (a V8 flag Node accepts on the command line):
 *    setting the same flag true and then false through v8.setFlagsFromString is a
 *    "contradiction", and V8 aborts: "Command-line provided flag
 *    --compact-on-every-full-gc specified as both true and false". A `dlm serve` started
 *    with it dies at its first restore of a snapshot >= restoreCollectBytesMin.
 * 2. A Worker thread: V8's flags are the process's, but process.execArgv is the
 *    thread's. In a process started with --expose-gc --freeze-flags-after-init, a Worker
 *    given its own execArgv (here []) has a gc, does not see the freeze, and the new
 *    flag change aborts the whole process ("Check failed: !IsFrozen()"). Before f8ae835
 *    an exposed gc was used as is, with no flag change.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/collect-garbage.ts', import.meta.url));

function run(args: readonly string[]): { status: number | null; out: string } {
  const result = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, out: `${result.stdout}${result.stderr}` };
}

const TWO_COLLECTIONS = `
import { collectGarbage } from ${JSON.stringify(MODULE)};
const junk = Array.from({ length: 200_000 }, (_, i) => ({ i, text: 'item-' + i }));
junk.length = 0;
collectGarbage();
collectGarbage();
console.log('alive');
`;

describe('collectGarbage under --abort-on-contradictory-flags', () => {
  for (const flags of [[], ['--expose-gc']]) {
    it(`collects and lives (${['--abort-on-contradictory-flags', ...flags].join(' ')})`, () => {
      const { status, out } = run([
        '--abort-on-contradictory-flags',
        ...flags,
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        TWO_COLLECTIONS,
      ]);
      expect(out).not.toMatch(/specified as both true and false/);
      expect(status, out).toBe(0);
      expect(out).toMatch(/alive/);
    }, 60_000);
  }
});

describe('collectGarbage in a Worker of a process with frozen flags', () => {
  it('collects and lives when the Worker has an execArgv of its own', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rvliv-'));
    const bundle = join(dir, 'collect-garbage.mjs');
    buildSync({
      entryPoints: [MODULE],
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: bundle,
      logLevel: 'silent',
    });
    const worker = join(dir, 'worker.mjs');
    writeFileSync(
      worker,
      `import { collectGarbage } from ${JSON.stringify(bundle)};
       collectGarbage();
       console.log('worker collected; gc exposed: ' + typeof globalThis.gc);`,
    );
    const main = join(dir, 'main.mjs');
    writeFileSync(
      main,
      `import { Worker } from 'node:worker_threads';
       new Worker(${JSON.stringify(worker)}, { execArgv: [] }).on('exit', (code) => console.log('worker exit ' + code));`,
    );
    const { status, out } = run(['--expose-gc', '--freeze-flags-after-init', main]);
    rmSync(dir, { recursive: true, force: true });
    expect(out).not.toMatch(/Check failed: !IsFrozen\(\)/);
    expect(status, out).toBe(0);
    expect(out).toMatch(/worker collected/);
  }, 60_000);
});
