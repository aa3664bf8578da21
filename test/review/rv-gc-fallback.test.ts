/**
 * Review of collect-garbage.ts (c2243f2): "a node that cannot expose gc() warns once and
 * runs on". (1) The fallback itself, forced by a vm that yields no gc. (2) Flags a user
 * might run the node with: the fallback must hold, the process must not die (under
 * --freeze-flags-after-init it did: V8 aborts on any flag change), and the main
 * context gets no gc of its own.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = `
  const { collectGarbage } = await import('./src/node/collect-garbage.ts');
  collectGarbage(); collectGarbage();
  console.log('collected; main-context gc:', typeof globalThis.gc);
`;

function runWith(flags: string[]) {
  return spawnSync(
    process.execPath,
    [...flags, '--import', 'tsx', '--input-type=module', '-e', SCRIPT],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
  );
}

describe('collectGarbage fallback', () => {
  it('warns once and is a no-op when the new context has no gc', async () => {
    vi.resetModules();
    vi.doMock('node:vm', () => ({ default: { runInNewContext: () => undefined } }));
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const { collectGarbage } = await import('../../src/node/collect-garbage.ts');
    expect(() => {
      collectGarbage();
      collectGarbage();
    }).not.toThrow();
    expect(warn).toHaveBeenCalledTimes(1);
    vi.doUnmock('node:vm');
    warn.mockRestore();
  });

  it.each([
    [[]],
    [['--disallow-code-generation-from-strings']],
    [['--frozen-intrinsics']],
    [['--jitless']],
    [['--freeze-flags-after-init']],
  ])('a process started with %j collects or warns, and does not die', (flags) => {
    const run = runWith(flags);
    const out = `${run.stdout}${run.stderr}`.slice(0, 400);
    expect({ status: run.status, signal: run.signal, out }).toMatchObject({
      status: 0,
      signal: null,
    });
    expect(run.stdout).toContain('main-context gc: undefined');
  });
});
