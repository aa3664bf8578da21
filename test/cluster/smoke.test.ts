import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/free-port.ts';

/**
 * What a new user does: `dlm cluster` (npm start) brings up three real `dlm serve`
 * processes on LevelDB, the example client takes and releases a lock through a
 * follower-or-leader address, and Ctrl-C stops everything cleanly. A restart finds the
 * state on disk: the next grant's fencing token is higher.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);
const workDir = mkdtempSync(join(tmpdir(), 'dlm-smoke-'));

afterAll(() => rmSync(workDir, { recursive: true, force: true }));

async function writeConfig(): Promise<{ path: string; clientAddresses: string[] }> {
  const nodes = [];
  for (const id of ['n1', 'n2', 'n3']) {
    const [peer, client, metrics] = [await freePort(), await freePort(), await freePort()];
    nodes.push({
      id,
      peerAddress: `127.0.0.1:${peer}`,
      clientAddress: `127.0.0.1:${client}`,
      metricsAddress: `127.0.0.1:${metrics}`,
    });
  }
  const path = join(workDir, 'cluster.config.json');
  writeFileSync(path, JSON.stringify({ nodes, dataDir: './data', raft: { tickIntervalMs: 20 } }));
  return { path, clientAddresses: nodes.map((node) => node.clientAddress) };
}

function startCluster(configPath: string): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/dlm'), 'cluster', '--config', configPath],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  return { child, output: () => output };
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function lock(address: string, name: string): Promise<number> {
  const { stdout } = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'examples/lock.ts'),
      '--address',
      address,
      '--hold-ms',
      '100',
      name,
    ],
    { cwd: ROOT, timeout: 30_000 },
  );
  const token = /fencing token (\d+)/.exec(stdout)?.[1];
  expect(stdout).toContain(`released ${name}`);
  return Number(token);
}

async function stop(cluster: {
  child: ChildProcess;
  output: () => string;
}): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) =>
    cluster.child.once('exit', (code) => resolve(code)),
  );
  cluster.child.kill('SIGINT');
  return exited;
}

describe('npm start (dlm cluster) with real processes', () => {
  it('serves locks, stops cleanly on Ctrl-C, and keeps its state across a restart', async () => {
    const { path, clientAddresses } = await writeConfig();
    const first = startCluster(path);
    await waitFor(
      () => /leader\s+term/.test(first.output()),
      20_000,
      'a leader in the status lines',
    );
    const tokenBefore = await lock(clientAddresses[2] ?? '', 'inventory/42');
    expect(await stop(first)).toBe(0);
    expect(first.output()).toContain('all nodes stopped');

    const second = startCluster(path);
    await waitFor(() => /leader\s+term/.test(second.output()), 20_000, 'a leader after restart');
    const tokenAfter = await lock(clientAddresses[0] ?? '', 'inventory/42');
    expect(tokenAfter).toBeGreaterThan(tokenBefore);
    expect(await stop(second)).toBe(0);
  }, 90_000);
});
