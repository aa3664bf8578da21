import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitNotAcquired } from '../../src/cli/cli.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * `dlm elect`, `dlm leader` and the semaphore form of `dlm lock` (issue 17) as a user
 * runs them: bin/dlm as child processes against a 3-node cluster of real `dlm serve`
 * processes. CMD runs while its dlm elect leads, with the term's token in its
 * environment; the next candidate leads once the leader's CMD exits (resign) or its dlm
 * elect is killed (its session expires); dlm leader --watch sees each change.
 */
const NODE = process.execPath;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let cluster: ProcessCluster;
const children: ChildProcess[] = [];

beforeAll(async () => {
  cluster = await ProcessCluster.create(3);
  cluster.startAll();
  await cluster.waitForLeader(15_000);
  // Writes "started FENCING LEADER ELECTION VALUE LOCK PERMITS", then runs until STOP exists (or 30 s).
  writeFileSync(
    join(cluster.dir, 'hold.cjs'),
    `const fs = require('node:fs');
     const [file, stop] = process.argv.slice(2);
     const env = process.env;
     fs.appendFileSync(file, ['started', env.DLM_FENCING_TOKEN, env.DLM_LEADER_TOKEN, env.DLM_ELECTION, env.DLM_LEADER_VALUE, env.DLM_LOCK, env.DLM_PERMITS].join(' ') + '\\n');
     const began = Date.now();
     const timer = setInterval(() => {
       if (!fs.existsSync(stop) && Date.now() - began < 30000) return;
       clearInterval(timer);
       fs.appendFileSync(file, 'finished\\n');
     }, 20);`,
  );
}, 60_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await cluster.stopAll();
  cluster.remove();
});

function path(name: string): string {
  return join(cluster.dir, name);
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

/** `dlm elect` as its own process, so that a test can kill it; resolves with its exit. */
function elect(election: string, value: string, name: string, options: readonly string[] = []) {
  const child = spawn(
    NODE,
    [
      join(ROOT, 'bin/dlm'),
      'elect',
      election,
      value,
      '--config',
      cluster.configPath,
      '--owner',
      name,
      ...options,
      '--',
      NODE,
      path('hold.cjs'),
      path(`${name}.txt`),
      path(`${name}.stop`),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stderr })),
  );
  return { child, exited };
}

/** The words CMD wrote when it started: [fencing, leader token, election, value, lock, permits]. */
function started(name: string): string[] {
  const line = read(path(`${name}.txt`))
    .split('\n')
    .find((each) => each.startsWith('started'));
  return (line ?? '').split(' ').slice(1);
}

/** Until `dlm describe NAME` shows `count` waiters (candidates in line). */
async function waitForWaiters(name: string, count: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const run = await cluster.dlm(['describe', name, '--json', '--config', cluster.configPath]);
    const state = JSON.parse(run.stdout) as { waiters: unknown[] };
    if (state.waiters.length === count) return;
    if (Date.now() > deadline) throw new Error(`${name} never had ${count} waiters`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function leaderJson(election: string) {
  const run = await cluster.dlm(['leader', election, '--json', '--config', cluster.configPath]);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as {
    election: string;
    leader: { session_id: number; owner: string; value: string; fencing_token: number } | null;
  };
}

describe('dlm elect and dlm leader on real processes', () => {
  it('runs CMD while leading; resign on exit and a killed candidate’s expiry hand over; dlm leader --watch sees each change', async () => {
    const election = 'svc/db';
    expect((await leaderJson(election)).leader).toBeNull();
    // The watcher is live once it printed its first line (nobody leads yet).
    const watcher = spawn(
      NODE,
      [
        join(ROOT, 'bin/dlm'),
        'leader',
        election,
        '--watch',
        '--count',
        '4',
        '--json',
        '--config',
        cluster.configPath,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(watcher);
    let watchedOut = '';
    let watchedErr = '';
    watcher.stdout?.on('data', (chunk: Buffer) => {
      watchedOut += chunk.toString();
    });
    watcher.stderr?.on('data', (chunk: Buffer) => {
      watchedErr += chunk.toString();
    });
    const watching = new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) =>
        watcher.once('exit', (code) => resolve({ code, stdout: watchedOut, stderr: watchedErr })),
    );
    await waitFor(() => watchedOut.includes('\n'), 20_000, 'dlm leader --watch to be live');

    const alpha = elect(election, '10.0.0.1:5432', 'alpha');
    await waitFor(() => started('alpha').length > 0, 20_000, 'alpha to lead');
    const [alphaFence, alphaLeader, alphaElection, alphaValue] = started('alpha');
    expect(alphaLeader).toBe(alphaFence);
    expect([alphaElection, alphaValue]).toEqual([election, '10.0.0.1:5432']);
    const described = await cluster.dlm([
      'describe',
      election,
      '--json',
      '--config',
      cluster.configPath,
    ]);
    expect(JSON.parse(described.stdout).holders).toEqual([
      expect.objectContaining({ fencing_token: Number(alphaFence), value: '10.0.0.1:5432' }),
    ]);
    expect((await leaderJson(election)).leader).toMatchObject({
      owner: 'alpha',
      value: '10.0.0.1:5432',
      fencing_token: Number(alphaFence),
    });
    const text = await cluster.dlm(['leader', election, '--config', cluster.configPath]);
    expect(text.stdout).toMatch(
      new RegExp(`^svc/db is led by session \\d+ \\(alpha\\), token ${alphaFence}, for `),
    );
    expect(text.stdout).toContain('value: 10.0.0.1:5432');

    // beta waits behind alpha (short lease: it is killed later), gamma behind beta.
    const beta = elect(election, '10.0.0.2:5432', 'beta', [
      '--ttl-ms',
      '3000',
      '--wait-ms',
      '30000',
    ]);
    await waitForWaiters(election, 1);
    const gamma = elect(election, '10.0.0.3:5432', 'gamma', ['--wait-ms', '30000']);
    await waitForWaiters(election, 2);
    expect(started('beta')).toEqual([]);

    // alpha's CMD ends: dlm elect resigns and exits with CMD's code; beta leads.
    writeFileSync(path('alpha.stop'), '');
    expect((await alpha.exited).code).toBe(0);
    await waitFor(() => started('beta').length > 0, 20_000, 'beta to lead');
    const [betaFence] = started('beta');
    expect(Number(betaFence)).toBeGreaterThan(Number(alphaFence));

    // beta's dlm elect dies at once (kill -9): nobody resigns, its session expires after
    // its TTL, and gamma leads with a higher token still.
    beta.child.kill('SIGKILL');
    await waitFor(() => started('gamma').length > 0, 20_000, 'gamma to lead after expiry');
    const [gammaFence] = started('gamma');
    expect(Number(gammaFence)).toBeGreaterThan(Number(betaFence));
    writeFileSync(path('beta.stop'), '');
    expect((await leaderJson(election)).leader).toMatchObject({
      owner: 'gamma',
      fencing_token: Number(gammaFence),
    });

    writeFileSync(path('gamma.stop'), '');
    expect((await gamma.exited).code).toBe(0);
    const watched = await watching;
    expect(watched.code, watched.stderr).toBe(0);
    const changes = watched.stdout
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            type: string;
            leader: { owner: string; fencing_token: number } | null;
          },
      );
    expect(changes.map((change) => [change.type, change.leader?.owner ?? null])).toEqual([
      ['current', null],
      ['elected', 'alpha'],
      ['elected', 'beta'],
      ['elected', 'gamma'],
    ]);
    expect(changes.map((change) => change.leader?.fencing_token ?? 0)).toEqual([
      0,
      Number(alphaFence),
      Number(betaFence),
      Number(gammaFence),
    ]);
    expect((await leaderJson(election)).leader).toBeNull();
  }, 90_000);

  it(`a candidate not elected within --wait-ms exits ${exitNotAcquired} without running CMD`, async () => {
    const election = 'svc/cache';
    const holder = elect(election, 'holder', 'holder');
    await waitFor(() => started('holder').length > 0, 20_000, 'holder to lead');
    const late = await cluster.dlm([
      'elect',
      election,
      'late',
      '--wait-ms',
      '0',
      '--config',
      cluster.configPath,
      '--',
      NODE,
      path('hold.cjs'),
      path('late.txt'),
      path('late.stop'),
    ]);
    expect(late.code).toBe(exitNotAcquired);
    expect(late.stderr).toContain('dlm elect: svc/cache: not elected within the wait');
    expect(late.stderr).toContain('holder');
    expect(read(path('late.txt'))).toBe('');
    writeFileSync(path('holder.stop'), '');
    expect((await holder.exited).code).toBe(0);
  }, 60_000);

  it('dlm lock --limit 2: two runs hold a permit each, a third is refused, each with its own token', async () => {
    const run = (name: string, wait: string) =>
      cluster.dlm([
        'lock',
        'pool/workers',
        '--limit',
        '2',
        '--wait-ms',
        wait,
        '--config',
        cluster.configPath,
        '--',
        NODE,
        path('hold.cjs'),
        path(`${name}.txt`),
        path(`${name}.stop`),
      ]);
    const one = run('p1', '20000');
    const two = run('p2', '20000');
    await waitFor(
      () => started('p1').length > 0 && started('p2').length > 0,
      20_000,
      'two permit holders',
    );
    const [fence1, , , , lock1, permits1] = started('p1');
    const [fence2] = started('p2');
    expect([lock1, permits1]).toEqual(['pool/workers', '1']);
    expect(fence1).not.toBe(fence2);
    const described = await cluster.dlm([
      'describe',
      'pool/workers',
      '--json',
      '--config',
      cluster.configPath,
    ]);
    const state = JSON.parse(described.stdout) as {
      mode: string;
      holders: { fencing_token: number; permits?: number }[];
    };
    expect(state.mode).toBe('SHARED');
    // The two runs start together: either may be granted first.
    const byToken = (a: number[], b: number[]) => (a[0] ?? 0) - (b[0] ?? 0);
    const held = state.holders.map((holder) => [holder.fencing_token, holder.permits ?? 0]);
    expect(held.sort(byToken)).toEqual(
      [
        [Number(fence1), 1],
        [Number(fence2), 1],
      ].sort(byToken),
    );
    const third = await run('p3', '0');
    expect(third.code).toBe(exitNotAcquired);
    expect(third.stderr).toContain('permits of pool/workers were not acquired');
    const asLock = await cluster.dlm([
      'lock',
      'pool/workers',
      '--wait-ms',
      '0',
      '--config',
      cluster.configPath,
      '--',
      NODE,
      '-e',
      '0',
    ]);
    expect(asLock.code).toBe(1);
    expect(asLock.stderr).toContain('semaphore');
    writeFileSync(path('p1.stop'), '');
    writeFileSync(path('p2.stop'), '');
    expect((await one).code).toBe(0);
    expect((await two).code).toBe(0);
  }, 60_000);
});
