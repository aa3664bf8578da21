import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * examples/python against a live cluster of real processes: stubs generated from
 * proto/dlm.proto by Debian's protoc and gRPC plugin, run by a Python with Debian's
 * grpcio. The lock is held by a TypeScript client when the Python one asks, so it waits
 * in the queue; it holds the lock for longer than its session's TTL, so the release
 * succeeds only if its keepalives worked. Without the tools the test is skipped with
 * the reason, never passed.
 */
const EXAMPLE = fileURLToPath(new URL('../../examples/python/', import.meta.url));
const LOCK = 'python/example';
const TTL_MS = 1_500;
const HOLD_MS = 4_000;
const TIMEOUT_MS = 60_000;

const stubs = mkdtempSync(join(tmpdir(), 'dlm-python-'));
let cluster: ProcessCluster | null = null;
let client: DlmClient | null = null;

afterAll(async () => {
  client?.close();
  await cluster?.stopAll();
  cluster?.remove();
  rmSync(stubs, { recursive: true, force: true });
});

/** A python3 that has Debian's grpcio and protobuf, or the reason there is none. */
function findPython(): { python: string } | { skipped: string } {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(python, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
    if (probe.status === 0) return { python };
  }
  return {
    skipped:
      'no python3 can import grpc and google.protobuf (apt-get install python3-grpcio python3-protobuf)',
  };
}

function run(
  file: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: TIMEOUT_MS },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr });
      },
    );
  });
}

describe('examples/python', () => {
  it('opens a session, keeps it alive, waits for the lock, prints the token, releases', async (context) => {
    const found = findPython();
    const generated = await run(join(EXAMPLE, 'generate.sh'), [stubs]);
    const skipped =
      'skipped' in found
        ? found.skipped
        : generated.code !== 0
          ? `the stubs could not be generated: ${generated.stderr.trim()}`
          : null;
    if (skipped !== null || 'skipped' in found) {
      console.warn(`skipped: ${skipped}`);
      context.skip(skipped ?? '');
      return;
    }
    cluster = await ProcessCluster.create(3);
    cluster.startAll();
    await cluster.waitForLeader(TIMEOUT_MS);
    const endpoints = cluster.nodes.map((node) => node.clientAddress);
    client = new DlmClient({ endpoints });

    // A TypeScript holder first, so that the Python client has to wait.
    const session = await client.openSession({ ttlMs: 10_000, clientName: 'ts-holder' });
    const tsLock = await session.acquire(LOCK, { waitMs: 5_000, owner: 'ts-holder' });
    const python = run(
      found.python,
      [
        join(EXAMPLE, 'lock.py'),
        '--address',
        endpoints[1] ?? '',
        '--ttl-ms',
        String(TTL_MS),
        '--wait-ms',
        '30000',
        '--hold-ms',
        String(HOLD_MS),
        LOCK,
      ],
      { DLM_PY_STUBS: stubs },
    );
    // Release once the Python client waits in the lock's queue.
    for (let attempt = 0; attempt < 600; attempt++) {
      const described = await client.describe(LOCK);
      if (described.waiters.some((waiter) => waiter.owner === 'python-example')) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await client.describe(LOCK)).waiters).toMatchObject([{ owner: 'python-example' }]);
    await tsLock.release();

    // While Python holds it (longer than its TTL), the cluster shows it as the holder.
    let heldBy: readonly { owner: string; token: string }[] = [];
    for (let attempt = 0; attempt < 600 && heldBy.length === 0; attempt++) {
      heldBy = (await client.describe(LOCK)).holders;
      if (heldBy.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(heldBy).toMatchObject([{ owner: 'python-example' }]);

    const result = await python;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^session \\d+ opened \\(TTL ${TTL_MS} ms\\)$`));
    const token = lines[1]?.match(/^acquired python\/example with fencing token (\d+)$/)?.[1];
    expect(token).toBe(heldBy[0]?.token);
    expect(BigInt(token ?? 0)).toBeGreaterThan(BigInt(tsLock.token));
    expect(lines.slice(2)).toEqual([
      'released python/example (released=True)',
      expect.stringMatching(/^session \d+ closed$/),
    ]);
    expect((await client.describe(LOCK)).holders).toEqual([]);
    await session.close();
  });
});
