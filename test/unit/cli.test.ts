import { describe, expect, it } from 'vitest';
import { exitOk, exitUsage, parseCommand, runCli, usage } from '../../src/cli/cli.ts';
import { freePort } from '../support/free-port.ts';

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

  it('parses the admin commands, with the config as default target', () => {
    const target = { configPath: 'cluster.config.json', endpoints: [], timeoutMs: 60_000 };
    expect(parseCommand(['status'])).toEqual({ name: 'status', target });
    expect(
      parseCommand(['member', 'add', 'n4', '--peer-address', 'h:1', '--client-address', 'h:2']),
    ).toEqual({ name: 'member add', target, id: 'n4', peerAddress: 'h:1', clientAddress: 'h:2' });
    expect(parseCommand(['member', 'add', 'n4', '--config', 'g.json'])).toEqual({
      name: 'member add',
      target: { ...target, configPath: 'g.json' },
      id: 'n4',
      peerAddress: null,
      clientAddress: null,
    });
    expect(
      parseCommand([
        'member',
        'remove',
        'n2',
        '--endpoints',
        'a:1, [::1]:2',
        '--timeout-ms',
        '500',
      ]),
    ).toEqual({
      name: 'member remove',
      target: { ...target, endpoints: ['a:1', '[::1]:2'], timeoutMs: 500 },
      id: 'n2',
    });
    expect(parseCommand(['leader', 'transfer'])).toEqual({
      name: 'leader transfer',
      target,
      id: null,
    });
    expect(parseCommand(['leader', 'transfer', 'n3'])).toMatchObject({ id: 'n3' });
  });

  it.each([
    [['member'], 'dlm member: expected one of add, remove'],
    [['member', 'join', 'n4'], "expected one of add, remove, got 'join'"],
    [['member', 'add'], 'dlm member add: ID is required'],
    [['member', 'remove', 'n1', 'n2'], "unexpected argument 'n2'"],
    [['status', '--endpoints', 'nohost'], '--endpoints: expected "host:port"'],
    [['status', '--timeout-ms', '-5'], '--timeout-ms must be a positive whole number'],
    [['leader', 'transfer', '--to', 'n2'], "unknown option '--to'"],
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

  it('an admin command with no reachable node says so, exit 1', async () => {
    const port = await freePort();
    const result = await run(['status', '--endpoints', `127.0.0.1:${port}`]);
    expect(result.code).toBe(1);
    expect(result.out).toContain(`127.0.0.1:${port}  -  unreachable  UNAVAILABLE`);
    expect(result.err).toContain('no node answered');
    const add = await run([
      'member',
      'add',
      'n4',
      '--endpoints',
      `127.0.0.1:${port}`,
      '--timeout-ms',
      '300',
    ]);
    expect(add.code).toBe(1);
    expect(add.err).toMatch(
      /--peer-address and --client-address are needed, or a config that names n4/,
    );
    const remove = await run([
      'member',
      'remove',
      'n4',
      '--endpoints',
      `127.0.0.1:${port}`,
      '--timeout-ms',
      '300',
    ]);
    expect(remove.code).toBe(1);
    expect(remove.err).toMatch(
      /gave up finding the leader in time; last: no node knows a reachable leader/,
    );
  });

  it('reports a config that cannot be loaded, naming the file, exit 1', async () => {
    const result = await run(['serve', '--config', '/nonexistent/dlm.json', '--node', 'n1']);
    expect(result.code).toBe(1);
    expect(result.err).toContain('/nonexistent/dlm.json');
  });
});
