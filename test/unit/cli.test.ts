import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  exitOk,
  exitUsage,
  lockSafetyMarginMs,
  minLockTtlMs,
  parseCommand,
  runCli,
  usage,
} from '../../src/cli/cli.ts';
import { formatLockState } from '../../src/cli/describe.ts';
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
    const target = {
      configPath: 'cluster.config.json',
      endpoints: [],
      timeoutMs: 60_000,
      tls: null,
    };
    expect(parseCommand(['status'])).toEqual({ name: 'status', target, json: false });
    expect(parseCommand(['status', '--json'])).toEqual({ name: 'status', target, json: true });
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
    expect(parseCommand(['rules'])).toEqual({ name: 'rules', target, json: false });
    expect(parseCommand(['rules', '--endpoints', 'a:1'])).toEqual({
      name: 'rules',
      target: { ...target, endpoints: ['a:1'] },
      json: false,
    });
    expect(parseCommand(['rules', 'apply', '--config', 'g.json'])).toEqual({
      name: 'rules apply',
      target: { ...target, configPath: 'g.json' },
    });
    expect(
      parseCommand(['status', '--tls-ca', 'ca.pem', '--tls-cert', 'c.pem', '--tls-key', 'k.pem']),
    ).toMatchObject({
      target: { tls: { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' } },
    });
  });

  it.each([
    [['member'], 'dlm member: expected one of add, remove'],
    [
      ['status', '--tls-ca', 'ca.pem'],
      'mutual TLS needs --tls-ca, --tls-cert, --tls-key together; missing --tls-cert, --tls-key',
    ],
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
    [['rules', 'show'], "dlm rules: unexpected argument 'show'"],
    [['rules', 'apply', 'now'], "dlm rules apply: unexpected argument 'now'"],
    [['lock'], 'dlm lock: NAME is required'],
    [['lock', '--', 'make'], 'dlm lock: NAME is required'],
    [['lock', 'jobs/1'], 'dlm lock: CMD is required: dlm lock NAME [options] -- CMD [ARGS...]'],
    [['lock', 'jobs/1', '--'], "dlm lock: CMD is required after '--'"],
    [['lock', 'jobs/1', 'make'], "dlm lock: unexpected argument 'make' (CMD goes after '--')"],
    [
      ['lock', 'jobs/1', '--ttl-ms', '0', '--', 'x'],
      "--ttl-ms must be a positive whole number of milliseconds, got '0'",
    ],
    [
      ['lock', 'jobs/1', '--ttl-ms', '5s', '--', 'x'],
      "--ttl-ms must be a positive whole number of milliseconds, got '5s'",
    ],
    [
      ['lock', 'jobs/1', '--wait-ms', '-1', '--', 'x'],
      "--wait-ms must be a whole number of milliseconds, got '-1'",
    ],
    [
      ['lock', 'jobs/1', '--kill-grace-ms', '1.5', '--', 'x'],
      "--kill-grace-ms must be a whole number of milliseconds, got '1.5'",
    ],
    [['lock', 'jobs/1', '--owner', '--', 'x'], 'dlm lock: --owner needs a value'],
    [['lock', 'jobs/1', '--wait', '5', '--', 'x'], "dlm lock: unknown option '--wait'"],
    [
      ['lock', 'jobs/1', '--timeout-ms', '0', '--', 'x'],
      'dlm lock: --timeout-ms must be a positive whole number',
    ],
    [
      ['lock', 'jobs/1', '--ttl-ms', '2999', '--', 'x'],
      'dlm lock: --ttl-ms 2999 is too short for --kill-grace-ms 1000: CMD must be stopped 1500 ms (the grace + max(500, ttl/10)) before the lease can end, which may take at most half the TTL; use --ttl-ms 3000 or more',
    ],
    [
      ['lock', 'jobs/1', '--ttl-ms', '7499', '--kill-grace-ms', '3000', '--', 'x'],
      'use --ttl-ms 7500 or more',
    ],
    [['certs'], 'dlm certs: expected one of init'],
    [['certs', 'init'], 'dlm certs init: --out DIR is required'],
    [['certs', 'init', '--out', 'd', '--days', '0'], 'dlm certs init: --days must be'],
    [['describe'], 'dlm describe: NAME is required'],
    [['describe', 'a', 'b'], "dlm describe: unexpected argument 'b'"],
    [['describe', 'a', '--', 'b'], "dlm describe: unknown option '--'"],
    [['locks', '--limit', '0'], "dlm locks: --limit must be a whole number of at least 1, got '0'"],
    [
      ['sessions', '--after', 'x'],
      "dlm sessions: --after must be a whole number of at least 0, got 'x'",
    ],
    [
      ['watch', '--count', '-1'],
      "dlm watch: --count must be a whole number of at least 1, got '-1'",
    ],
    [['revoke'], 'dlm revoke: NAME is required'],
    [['sessions', 'x'], "dlm sessions: unexpected argument 'x'"],
  ])('%j is a usage error naming the problem, exit 2', async (args, problem) => {
    const result = await run(args);
    expect(result.code).toBe(exitUsage);
    expect(result.err).toContain(problem);
  });

  it('parses lock: defaults, every option, and CMD after --', () => {
    const target = {
      configPath: 'cluster.config.json',
      endpoints: [],
      timeoutMs: 60_000,
      tls: null,
    };
    expect(parseCommand(['lock', 'inventory/42', '--', './reprice.sh', '--dry-run'])).toEqual({
      name: 'lock',
      target,
      lock: 'inventory/42',
      locks: ['inventory/42'],
      ttlMs: 10_000,
      waitMs: 60_000,
      shared: false,
      owner: null,
      killGraceMs: 1_000,
      command: ['./reprice.sh', '--dry-run'],
      semaphore: null,
    });
    expect(
      parseCommand([
        'lock',
        '--ttl-ms',
        '3000',
        'jobs/1',
        '--wait-ms',
        '0',
        '--shared',
        '--owner',
        'cron on b7',
        '--kill-grace-ms',
        '500',
        '--endpoints',
        'h:1,h:2',
        '--timeout-ms',
        '900',
        '--',
        'sh',
        '-c',
        'echo $DLM_FENCING_TOKEN -- done',
      ]),
    ).toEqual({
      name: 'lock',
      target: { ...target, endpoints: ['h:1', 'h:2'], timeoutMs: 900 },
      lock: 'jobs/1',
      locks: ['jobs/1'],
      ttlMs: 3_000,
      waitMs: 0,
      shared: true,
      owner: 'cron on b7',
      killGraceMs: 500,
      command: ['sh', '-c', 'echo $DLM_FENCING_TOKEN -- done'],
      semaphore: null,
    });
  });

  it('parses the semaphore form of lock (--limit, --permits) and refuses what does not fit it', () => {
    expect(
      parseCommand(['lock', 'pool', '--limit', '3', '--permits', '2', '--', 'true']),
    ).toMatchObject({
      name: 'lock',
      lock: 'pool',
      semaphore: { limit: 3, permits: 2 },
    });
    expect(parseCommand(['lock', 'pool', '--limit', '3', '--', 'true'])).toMatchObject({
      semaphore: { limit: 3, permits: 1 },
    });
    expect(parseCommand(['lock', 'pool', '--permits', '2', '--', 'true'])).toBe(
      "dlm lock: --permits needs --limit (the semaphore's limit)",
    );
    expect(parseCommand(['lock', 'pool', '--limit', '2', '--permits', '3', '--', 'true'])).toBe(
      'dlm lock: --permits 3 is more than --limit 2',
    );
    expect(parseCommand(['lock', 'a', 'b', '--limit', '2', '--', 'true'])).toBe(
      'dlm lock: --limit takes one NAME (a semaphore), not a set',
    );
    expect(parseCommand(['lock', 'a', '--limit', '0', '--', 'true'])).toBe(
      "dlm lock: --limit must be a whole number of at least 1, got '0'",
    );
    expect(parseCommand(['lock', 'a', '--limit', '2', '--shared', '--', 'true'])).toMatch(
      /^dlm lock: --shared is for locks/,
    );
  });

  it('parses elect NAME VALUE -- CMD with the options of lock, and refuses it without CMD', () => {
    expect(
      parseCommand(['elect', 'svc/primary', '10.0.0.7:80', '--wait-ms', '0', '--', 'serve']),
    ).toEqual({
      name: 'elect',
      target: { configPath: 'cluster.config.json', endpoints: [], timeoutMs: 60_000, tls: null },
      election: 'svc/primary',
      value: '10.0.0.7:80',
      ttlMs: 10_000,
      waitMs: 0,
      owner: null,
      killGraceMs: 1_000,
      command: ['serve'],
    });
    expect(parseCommand(['elect', 'svc/primary', 'v'])).toBe(
      'dlm elect: CMD is required: dlm elect NAME VALUE [options] -- CMD [ARGS...]',
    );
    expect(parseCommand(['elect', 'svc/primary', '--', 'serve'])).toBe(
      'dlm elect: VALUE is required',
    );
    expect(parseCommand(['elect', 'e', 'v', '--ttl-ms', '1000', '--', 'x'])).toMatch(
      /^dlm elect: --ttl-ms 1000 is too short for --kill-grace-ms 1000/,
    );
  });

  it('parses leader NAME (read or --watch) beside leader transfer', () => {
    expect(parseCommand(['leader', 'svc/primary', '--json'])).toMatchObject({
      name: 'leader',
      election: 'svc/primary',
      json: true,
      stale: false,
      watch: false,
      count: null,
    });
    expect(parseCommand(['leader', 'svc/primary', '--watch', '--count', '3'])).toMatchObject({
      name: 'leader',
      watch: true,
      count: 3,
    });
    expect(parseCommand(['leader', 'transfer', 'n2'])).toMatchObject({
      name: 'leader transfer',
      id: 'n2',
    });
    // An election named "transfer" is read with an option before its name.
    expect(parseCommand(['leader', '--json', 'transfer'])).toMatchObject({
      name: 'leader',
      election: 'transfer',
    });
    expect(parseCommand(['leader', 'e', '--count', '2'])).toBe(
      'dlm leader: --count goes with --watch',
    );
    expect(parseCommand(['leader', 'e', '--watch', '--stale'])).toMatch(
      /^dlm leader: --stale is for one read/,
    );
  });

  it('parses lock with several NAMEs (taken together) and refuses one given twice', () => {
    expect(parseCommand(['lock', 'a', 'b', '--shared', 'c', '--', 'true'])).toMatchObject({
      name: 'lock',
      lock: 'a',
      locks: ['a', 'b', 'c'],
      shared: true,
      command: ['true'],
    });
    expect(parseCommand(['lock', 'a', 'b', 'a', '--', 'true'])).toBe(
      'dlm lock: NAME "a" is given twice',
    );
  });

  it("leaves CMD's words alone: --help, help and -- after the first -- are CMD's", () => {
    expect(parseCommand(['lock', 'a', '--', 'grep', '--help'])).toMatchObject({
      name: 'lock',
      command: ['grep', '--help'],
    });
    expect(parseCommand(['lock', 'a', '--', 'make', 'help', '--', '-h'])).toMatchObject({
      command: ['make', 'help', '--', '-h'],
    });
    expect(parseCommand(['lock', 'a', '--help', '--', 'make'])).toEqual({ name: 'help' });
  });

  it('parses describe and the read commands', () => {
    const target = { configPath: 'g.json', endpoints: [], timeoutMs: 60_000, tls: null };
    expect(parseCommand(['describe', 'jobs/1', '--config', 'g.json'])).toEqual({
      name: 'describe',
      target,
      lock: 'jobs/1',
      stale: false,
      json: false,
    });
    expect(parseCommand(['describe', 'jobs/1', '--json', '--stale', '--config', 'g.json'])).toEqual(
      { name: 'describe', target, lock: 'jobs/1', stale: true, json: true },
    );
    expect(parseCommand(['locks', '--config', 'g.json'])).toEqual({
      name: 'locks',
      target,
      json: false,
      prefix: '',
      limit: 0,
      after: '',
      stale: false,
    });
    expect(
      parseCommand([
        'locks',
        'jobs/',
        '--limit',
        '5',
        '--after',
        'jobs/3',
        '--json',
        '--config',
        'g.json',
      ]),
    ).toMatchObject({ prefix: 'jobs/', limit: 5, after: 'jobs/3', json: true });
    expect(parseCommand(['sessions', '--after', '12', '--stale', '--config', 'g.json'])).toEqual({
      name: 'sessions',
      target,
      json: false,
      limit: 0,
      after: 12,
      stale: true,
    });
    expect(
      parseCommand(['watch', 'jobs/', '--count', '3', '--json', '--config', 'g.json']),
    ).toEqual({ name: 'watch', target, json: true, prefix: 'jobs/', count: 3 });
    expect(parseCommand(['watch', '--config', 'g.json'])).toMatchObject({
      prefix: '',
      count: null,
    });
    expect(parseCommand(['revoke', 'jobs/1', '--reason', 'stuck', '--config', 'g.json'])).toEqual({
      name: 'revoke',
      target,
      lock: 'jobs/1',
      reason: 'stuck',
      json: false,
    });
  });

  it('the kill grace and the margin fit in half the TTL from minLockTtlMs up', () => {
    for (const grace of [0, 1, 500, 1_000, 1_999, 2_000, 2_001, 3_000, 10_000, 60_000]) {
      const min = minLockTtlMs(grace);
      // Every TTL from the minimum up fits; the one just below does not pass the parser.
      for (const ttl of [min, min + 1, min + 9, min + 10, 2 * min, 10 * min]) {
        expect(2 * lockSafetyMarginMs(ttl, grace)).toBeLessThanOrEqual(ttl);
      }
      const below = ['lock', 'a', '--ttl-ms', String(min - 1), '--kill-grace-ms', String(grace)];
      expect(parseCommand([...below, '--', 'x'])).toContain(`use --ttl-ms ${min} or more`);
      expect(lockSafetyMarginMs(min, grace)).toBeGreaterThanOrEqual(grace + 500);
      expect(
        parseCommand([
          'lock',
          'a',
          '--ttl-ms',
          String(min),
          '--kill-grace-ms',
          String(grace),
          '--',
          'x',
        ]),
      ).toMatchObject({ ttlMs: min });
    }
    expect(minLockTtlMs(1_000)).toBe(3_000);
    expect(lockSafetyMarginMs(10_000, 1_000)).toBe(2_000);
  });

  it('formats a lock state: free, held with waiters, waiters without a holder', () => {
    const holder = (session_id: number, owner: string, fencing_token: number, held_ms: number) => ({
      session_id,
      owner,
      fencing_token,
      acquired_index: fencing_token,
      held_ms,
    });
    const waiter = { session_id: 6, owner: 'cron', mode: 'EXCLUSIVE', enqueued_index: 60 };
    expect(formatLockState({ lock: 'jobs/1', holders: [], waiters: [], mode: null })).toBe(
      'jobs/1 is free\n',
    );
    expect(
      formatLockState({
        lock: 'jobs/1',
        holders: [holder(4, 'b7 pid 12', 57, 1_250), holder(5, '', 58, 80)],
        waiters: [waiter],
        mode: 'SHARED',
      }),
    ).toBe(
      'jobs/1 is held SHARED by:\n' +
        '  OWNER      SESSION  TOKEN  HELD\n' +
        '  b7 pid 12  4        57     1.3s\n' +
        '  -          5        58     80ms\n' +
        'waiting (1):\n' +
        '  OWNER  SESSION  MODE\n' +
        '  cron   6        EXCLUSIVE\n',
    );
    expect(
      formatLockState({
        lock: 'jobs/1',
        holders: [],
        waiters: [{ ...waiter, mode: 'SHARED' }],
        mode: null,
      }),
    ).toBe(
      'jobs/1 has no holder\nwaiting (1):\n  OWNER  SESSION  MODE\n  cron   6        SHARED\n',
    );
  });

  it('lock and describe with no reachable node fail after --timeout-ms, exit 1, CMD not run', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'dlm-cli-'));
    try {
      const marker = join(dir, 'ran');
      const started = Date.now();
      const result = await run([
        'lock',
        'jobs/1',
        '--endpoints',
        `127.0.0.1:${port}`,
        '--timeout-ms',
        '300',
        '--',
        process.execPath,
        '-e',
        `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`,
      ]);
      expect(result.code).toBe(1);
      // Refused at once, or (on a loaded machine) not even connected within the 300 ms.
      expect(result.err).toMatch(
        /^dlm lock: Lock\.OpenSession at 127\.0\.0\.1:\d+: (UNAVAILABLE|DEADLINE_EXCEEDED)/,
      );
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(existsSync(marker)).toBe(false);
      const described = await run([
        'describe',
        'jobs/1',
        '--endpoints',
        `127.0.0.1:${port}`,
        '--timeout-ms',
        '300',
      ]);
      expect(described.code).toBe(1);
      expect(described.err).toMatch(/^dlm describe: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an admin command with no reachable node says so, exit 1', async () => {
    const port = await freePort();
    const result = await run(['status', '--endpoints', `127.0.0.1:${port}`]);
    expect(result.code).toBe(1);
    expect(result.out).toMatch(
      /^ADDRESS +NODE +ROLE +TERM +COMMIT +APPLIED +LEADER +RULES +POLICY +BEHAVIOUR\n/,
    );
    expect(result.out).toMatch(
      new RegExp(`\\n127\\.0\\.0\\.1:${port} +- +unreachable +UNAVAILABLE`),
    );
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
