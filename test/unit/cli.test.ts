import { describe, expect, it } from 'vitest';
import { exitOk, exitUsage, parseCommand, runCli, usage } from '../../src/cli/cli.ts';

async function run(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  });
  return { code, out, err };
}

describe('dlm CLI', () => {
  it.each([['--help'], ['-h'], ['help'], ['cluster', '--help']])(
    '%s prints usage, exit 0',
    async (...args) => {
      expect(await run(args)).toEqual({ code: exitOk, out: usage, err: '' });
    },
  );

  it('parses serve and cluster', () => {
    expect(parseCommand(['serve', '--config', 'c.json', '--node', 'n2'])).toEqual({
      name: 'serve',
      configPath: 'c.json',
      id: 'n2',
      join: false,
    });
    expect(parseCommand(['serve', '--node', 'n4', '--config', 'c.json', '--join'])).toMatchObject({
      join: true,
    });
    expect(parseCommand(['cluster'])).toEqual({
      name: 'cluster',
      configPath: 'cluster.config.json',
    });
  });

  it.each([
    [['serve', '--node', 'n1'], '--config FILE is required'],
    [['serve', '--config', 'c.json'], '--node ID is required'],
    [['serve', '--config'], '--config needs a value'],
    [['cluster', '--bogus'], "unknown option '--bogus'"],
    [['frobnicate'], "unknown command 'frobnicate'"],
  ])('%j is a usage error naming the problem, exit 2', async (args, problem) => {
    const result = await run(args);
    expect(result.code).toBe(exitUsage);
    expect(result.err).toContain(problem);
  });

  it('reports a config that cannot be loaded, naming the file, exit 1', async () => {
    const result = await run(['serve', '--config', '/nonexistent/dlm.json', '--node', 'n1']);
    expect(result.code).toBe(1);
    expect(result.err).toContain('/nonexistent/dlm.json');
  });
});
