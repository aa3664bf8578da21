import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitNotAcquired } from '../../src/cli/cli.ts';
import { type DlmRun, ProcessCluster } from '../support/process-cluster.ts';

/**
 * `dlm lock NAME1 NAME2 -- CMD` (issue 17) as a user runs it: bin/dlm as a child process
 * against a 3-node cluster of real `dlm serve` processes. The names are taken together
 * (AcquireAll): CMD runs while both are held under one token, and both are free after.
 */
const NODE = process.execPath;

let cluster: ProcessCluster;

beforeAll(async () => {
  cluster = await ProcessCluster.create(3);
  cluster.startAll();
  await cluster.waitForLeader(15_000);
  // Writes "started TOKEN LOCK LOCKS", then runs until STOP exists (or 30 s).
  writeFileSync(
    join(cluster.dir, 'hold.cjs'),
    `const fs = require('node:fs');
     const [file, stop] = process.argv.slice(2);
     const env = process.env;
     fs.appendFileSync(file, 'started ' + env.DLM_FENCING_TOKEN + ' ' + env.DLM_LOCK + ' ' + env.DLM_LOCKS + '\\n');
     const began = Date.now();
     const timer = setInterval(() => {
       if (!fs.existsSync(stop) && Date.now() - began < 30000) return;
       clearInterval(timer);
       fs.appendFileSync(file, 'finished\\n');
     }, 20);`,
  );
}, 60_000);

afterAll(async () => {
  await cluster.stopAll();
  cluster.remove();
});

function path(name: string): string {
  return join(cluster.dir, name);
}

function lock(names: readonly string[], options: readonly string[], ...args: string[]) {
  return cluster.dlm([
    'lock',
    ...names,
    '--config',
    cluster.configPath,
    ...options,
    '--',
    NODE,
    path('hold.cjs'),
    ...args,
  ]);
}

function describeLock(name: string): Promise<DlmRun> {
  return cluster.dlm(['describe', name, '--config', cluster.configPath]);
}

function read(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('dlm lock with several names on real processes', () => {
  it('runs CMD while holding both under one token, refuses a run that needs either, frees both after', async () => {
    const file = path('set-1.txt');
    const stop = path('set-1.stop');
    const holder = lock(['set/b', 'set/a'], ['--owner', 'set-holder'], file, stop);
    await waitFor(() => read(file).startsWith('started'), 20_000, 'CMD to start');
    const [, token, first, locks] = read(file).trim().split(/\s+/);
    expect(Number(token)).toBeGreaterThan(0);
    expect(first).toBe('set/b');
    expect(JSON.parse(locks ?? 'null')).toEqual(['set/b', 'set/a']);

    // While CMD runs both are held, by the same grant.
    for (const name of ['set/a', 'set/b']) {
      const described = await describeLock(name);
      expect(described.code).toBe(0);
      expect(described.stdout).toMatch(
        new RegExp(`^${name} is held EXCLUSIVE by:\\n.*\\n  set-holder +\\d+ +${token} `),
      );
    }
    // Another run that needs one of them (with a free one) gets neither; CMD does not run.
    const second = path('set-2.txt');
    const refused = await lock(['set/c', 'set/a'], ['--wait-ms', '0'], second, stop);
    expect(refused.code).toBe(exitNotAcquired);
    expect(refused.stderr).toContain('set/a held by set-holder');
    expect(read(second)).toBe('');
    expect((await describeLock('set/c')).stdout).toBe('set/c is free\n');

    writeFileSync(stop, '');
    const done = await holder;
    expect(done.stderr).toBe('');
    expect(done.code).toBe(0);
    expect(read(file)).toContain('finished');
    for (const name of ['set/a', 'set/b']) {
      expect(await describeLock(name)).toEqual({
        code: 0,
        stdout: `${name} is free\n`,
        stderr: '',
      });
    }
  }, 60_000);
});
