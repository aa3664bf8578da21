import { describe, expect, it } from 'vitest';
import { exitOk, exitUsage, runCli, usage } from '../../src/cli/cli.ts';

function run(args: readonly string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = runCli(args, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  });
  return { code, out, err };
}

describe('dlm CLI stub', () => {
  it.each([['--help'], ['-h'], ['help'], ['cluster', '--help']])(
    '%s prints usage, exit 0',
    (...args) => {
      const result = run(args);
      expect(result).toEqual({ code: exitOk, out: usage, err: '' });
    },
  );

  it.each([['cluster'], ['serve', '--config', 'cluster.config.json', '--node', 'n1']])(
    '%s says the runtime is not built yet and exits 2',
    (...args) => {
      const result = run(args);
      expect(result.code).toBe(exitUsage);
      expect(result.out).toBe('');
      expect(result.err).toContain(`dlm ${args[0]}: the cluster runtime is not built yet`);
      expect(result.err).toContain('npm run simulate -- --seeds N');
    },
  );

  it('names an unknown command and exits 2', () => {
    const result = run(['frobnicate']);
    expect(result.code).toBe(exitUsage);
    expect(result.err).toContain("unknown command 'frobnicate'");
  });

  it('without a command prints usage to stderr and exits 2', () => {
    expect(run([])).toEqual({ code: exitUsage, out: '', err: usage });
  });
});
