import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitNotAcquired, exitSessionLost } from '../../src/cli/cli.ts';
import { type DlmRun, ProcessCluster } from '../support/process-cluster.ts';

/**
 * `dlm lock NAME -- CMD` and `dlm describe NAME` as a user runs them: bin/dlm as a child
 * process against a 3-node cluster of real `dlm serve` processes. CMD is a small node
 * script (written to the cluster's temp dir) that records what it saw in a file.
 * One cluster serves the whole file; each test uses its own lock name. The last test
 * freezes every node (SIGSTOP) to make dlm lock lose its session, and thaws them after.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = process.execPath;

let cluster: ProcessCluster;

beforeAll(async () => {
  cluster = await ProcessCluster.create(3);
  cluster.startAll();
  await cluster.waitForLeader(15_000);
  // CMD scripts. argv[2] is the file each writes to.
  script(
    'print-env.cjs',
    `console.log('token=' + process.env.DLM_FENCING_TOKEN + ' lock=' + process.env.DLM_LOCK + ' session=' + process.env.DLM_SESSION_ID);`,
  );
  script(
    'interval.cjs',
    `const fs = require('node:fs');
     const [file] = process.argv.slice(2);
     const token = process.env.DLM_FENCING_TOKEN;
     fs.appendFileSync(file, 'start ' + token + ' ' + Date.now() + '\\n');
     setTimeout(() => fs.appendFileSync(file, 'end ' + token + ' ' + Date.now() + '\\n'), 500);`,
  );
  // Writes "started PID TOKEN", then runs until STOP exists (or 30 s), writes "finished".
  // With "ignore-term" it survives SIGTERM (recording it); with "exit-on-term" it exits 3.
  script(
    'hold.cjs',
    `const fs = require('node:fs');
     const [file, stop, onTerm] = process.argv.slice(2);
     process.on('SIGTERM', () => {
       fs.appendFileSync(file, 'got SIGTERM\\n');
       if (onTerm === 'exit-on-term') process.exit(3);
     });
     fs.appendFileSync(file, 'started ' + process.pid + ' ' + process.env.DLM_FENCING_TOKEN + '\\n');
     const began = Date.now();
     const timer = setInterval(() => {
       if (!fs.existsSync(stop) && Date.now() - began < 30000) return;
       clearInterval(timer);
       fs.appendFileSync(file, 'finished\\n');
     }, 20);`,
  );
});

afterAll(async () => {
  for (const node of cluster.nodes) cluster.resume(node.id);
  await cluster.stopAll();
  cluster.remove();
});

function script(name: string, text: string): void {
  writeFileSync(join(cluster.dir, name), text);
}

function path(name: string): string {
  return join(cluster.dir, name);
}

/** `dlm lock NAME [options] -- node SCRIPT [ARGS...]` */
function lock(
  name: string,
  options: readonly string[],
  scriptName: string,
  ...args: string[]
): Promise<DlmRun> {
  return cluster.dlm([
    'lock',
    name,
    '--config',
    cluster.configPath,
    ...options,
    '--',
    NODE,
    path(scriptName),
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('dlm lock and dlm describe on real processes', () => {
  it('runs CMD with the token, the lock and the session in its environment, then frees the lock', async () => {
    const run = await lock('jobs/1', [], 'print-env.cjs');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^token=[1-9]\d* lock=jobs\/1 session=[1-9]\d*\n$/);
    const described = await describeLock('jobs/1');
    expect(described).toEqual({ code: 0, stdout: 'jobs/1 is free\n', stderr: '' });
  });

  it('excludes: concurrent runs hold the lock one after another, with rising tokens', async () => {
    const file = path('intervals.txt');
    const runs = await Promise.all(
      [0, 1, 2].map(() => lock('jobs/2', ['--wait-ms', '20000'], 'interval.cjs', file)),
    );
    expect(runs.map((run) => run.code)).toEqual([0, 0, 0]);
    const lines = read(file)
      .trim()
      .split('\n')
      .map((line) => line.split(' '));
    expect(lines).toHaveLength(6);
    const tokens: bigint[] = [];
    let previousEnd = 0;
    for (let i = 0; i < lines.length; i += 2) {
      const [startWord, startToken, startMs] = lines[i] ?? [];
      const [endWord, endToken, endMs] = lines[i + 1] ?? [];
      // Each start is followed by its own end: no other run started in between.
      expect([startWord, endWord]).toEqual(['start', 'end']);
      expect(endToken).toBe(startToken);
      expect(Number(startMs)).toBeGreaterThanOrEqual(previousEnd);
      previousEnd = Number(endMs);
      tokens.push(BigInt(startToken ?? '0'));
    }
    expect(new Set(tokens).size).toBe(3);
    expect([...tokens].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(tokens);
  });

  it(`--wait-ms 0 on a held lock exits ${exitNotAcquired} naming the holder, without running CMD; describe shows the holder`, async () => {
    const file = path('holder-3.txt');
    const stop = path('stop-3');
    const holder = lock('jobs/3', ['--owner', 'holder-A'], 'hold.cjs', file, stop);
    await waitFor(() => read(file).startsWith('started'), 20_000, 'the holder to start');
    const token = read(file).split(/\s+/)[2];

    const second = path('second-3.txt');
    const refused = await lock('jobs/3', ['--wait-ms', '0'], 'hold.cjs', second, stop);
    expect(refused.code).toBe(exitNotAcquired);
    expect(refused.stderr).toContain('jobs/3 was not acquired: held by holder-A');
    expect(read(second)).toBe('');

    const described = await describeLock('jobs/3');
    expect(described.code).toBe(0);
    expect(described.stdout).toMatch(
      new RegExp(
        `^jobs/3 is held EXCLUSIVE by:\\n  OWNER +SESSION +TOKEN +HELD\\n  holder-A +\\d+ +${token} +\\d[\\d.]*(ms|s)\\n$`,
      ),
    );

    writeFileSync(stop, '');
    expect((await holder).code).toBe(0);
    expect(read(file)).toContain('finished');
    expect((await describeLock('jobs/3')).stdout).toBe('jobs/3 is free\n');
  });

  it("passes CMD's exit code through, 128 + N for signal N, 127 for a CMD that does not exist", async () => {
    const base = ['lock', 'jobs/4', '--config', cluster.configPath, '--'];
    expect((await cluster.dlm([...base, NODE, '-e', 'process.exit(7)'])).code).toBe(7);
    const signalled = await cluster.dlm([
      ...base,
      NODE,
      '-e',
      "process.kill(process.pid, 'SIGKILL')",
    ]);
    expect(signalled.code).toBe(128 + 9);
    const missing = await cluster.dlm([...base, join(cluster.dir, 'no-such-command')]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("cannot run '");
    expect((await describeLock('jobs/4')).stdout).toBe('jobs/4 is free\n');
  });

  it('passes SIGTERM on to CMD, waits for it, releases the lock and exits with its code', async () => {
    const file = path('term-5.txt');
    const child = spawn(
      NODE,
      [
        join(ROOT, 'bin/dlm'),
        'lock',
        'jobs/5',
        '--config',
        cluster.configPath,
        '--',
        NODE,
        path('hold.cjs'),
        file,
        path('never'),
        'exit-on-term',
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await waitFor(() => read(file).startsWith('started'), 20_000, 'CMD to start');
    child.kill('SIGTERM');
    expect(await exited).toBe(3);
    expect(read(file)).toContain('got SIGTERM');
    expect(read(file)).not.toContain('finished');
    expect((await describeLock('jobs/5')).stdout).toBe('jobs/5 is free\n');
  });

  it(`a lost session stops CMD (SIGTERM, then SIGKILL) before the lease can end, exit ${exitSessionLost}`, async () => {
    const ttlMs = 3_000;
    const file = path('lost-6.txt');
    const running = lock(
      'jobs/6',
      ['--ttl-ms', String(ttlMs), '--kill-grace-ms', '500'],
      'hold.cjs',
      file,
      path('never'),
      'ignore-term',
    );
    await waitFor(() => read(file).startsWith('started'), 20_000, 'CMD to start');
    const [, pid, token] = read(file).split(/\s+/);
    expect(isAlive(Number(pid))).toBe(true);

    // No keepalive can get through now: dlm lock must stop CMD by itself.
    const pausedAtMs = Date.now();
    for (const node of cluster.nodes) cluster.pause(node.id);
    const finished = running.then((run) => ({ run, exitedAfterMs: Date.now() - pausedAtMs }));
    const diedAfterMs = await waitFor(
      () => !isAlive(Number(pid)),
      ttlMs + 5_000,
      'CMD to die',
    ).then(
      () => Date.now() - pausedAtMs,
      () => Number.POSITIVE_INFINITY,
    );
    if (diedAfterMs === Number.POSITIVE_INFINITY) process.kill(Number(pid), 'SIGKILL');
    const { run, exitedAfterMs } = await finished;
    for (const node of cluster.nodes) cluster.resume(node.id);

    expect(run.code).toBe(exitSessionLost);
    expect(run.stderr).toContain('no keepalive confirmed in time; the lease may have ended');
    expect(run.stderr).toContain(
      'stopping CMD before the lease on jobs/6 can end: SIGTERM now, SIGKILL in 500 ms',
    );
    // CMD ignored SIGTERM, so SIGKILL ended it; it never finished.
    expect(read(file)).toContain('got SIGTERM');
    expect(read(file)).not.toContain('finished');
    expect(run.stderr).toContain('CMD ended (SIGKILL)');
    // The lease lasts at least until the last confirmed keepalive's send time + TTL;
    // dlm lock kills by that time - margin (1000 ms) + grace (500 ms), and that
    // keepalive was sent before the pause: CMD is dead within TTL - 500 ms of it.
    expect(diedAfterMs).toBeLessThan(ttlMs);
    expect(exitedAfterMs).toBeLessThan(ttlMs + 2_000);

    // Once thawed, the cluster expires the session and the lock can be taken again.
    const next = await lock('jobs/6', ['--wait-ms', '20000'], 'print-env.cjs');
    expect(next.code).toBe(0);
    const nextToken = /token=(\d+)/.exec(next.stdout)?.[1] ?? '0';
    expect(BigInt(nextToken)).toBeGreaterThan(BigInt(token ?? '0'));
  });
});
