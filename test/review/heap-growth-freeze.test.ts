/**
 * Review of 63f2838: V8 reads `--freeze_flags_after_init` (underscores, or any mix) as
 * the same flag as `--freeze-flags-after-init`, but setHeapGrowingPercent (and
 * collect-garbage.ts) look for the hyphenated spelling only, so the node aborts at
 * start-up instead of warning. And `--freeze-flags-after-init --no-freeze-flags-after-init`
 * leaves flags unfrozen, yet the node says it cannot apply the setting.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));
const CHILD = `
import { setHeapGrowingPercent } from ${JSON.stringify(MODULE)};
console.log(JSON.stringify({ note: setHeapGrowingPercent(100) }));
`;

function run(flags: readonly string[]) {
  const r = spawnSync(
    process.execPath,
    [...flags, '--import', 'tsx', '--input-type=module', '-e', CHILD],
    { encoding: 'utf8', timeout: 60_000 },
  );
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr.slice(0, 200) };
}

describe('setHeapGrowingPercent under other spellings of --freeze-flags-after-init', () => {
  it.each([['--freeze_flags_after_init'], ['--freeze-flags_after-init']])(
    '%s: warns and runs on (does not abort)',
    (flag) => {
      const r = run([flag]);
      expect(r, JSON.stringify(r)).toMatchObject({ status: 0, signal: null });
      expect(JSON.parse(r.stdout.trim()).note).toMatch(/not applied/);
    },
    60_000,
  );

  it('--freeze-flags-after-init then --no-freeze-flags-after-init: flags are not frozen, so it applies', () => {
    const r = run(['--freeze-flags-after-init', '--no-freeze-flags-after-init']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim()).note).toBeNull();
  }, 60_000);
});

const COLLECT = fileURLToPath(new URL('../../src/node/collect-garbage.ts', import.meta.url));

describe('collectGarbage under another spelling of --freeze-flags-after-init', () => {
  it('warns that it cannot collect and runs on (does not abort)', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--freeze_flags_after_init',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { collectGarbage } from ${JSON.stringify(COLLECT)}; collectGarbage(); console.log('alive');`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim() }).toEqual({
      status: 0,
      signal: null,
      stdout: 'alive',
    });
    expect(r.stderr).toMatch(/cannot collect garbage on demand/);
  }, 60_000);
});
