import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * Real `dlm serve` processes whose config files disagree on the `lock` section (issue
 * 10): the odd node says so in its log, naming each field with both values, and
 * answers by the rules the log agreed, as the others do.
 */
const SHARED_LOCK = { lockDelayMs: 2_000, sessionTtlMsMin: 1_000 };
const ODD_LOCK = { lockDelayMs: 0, sessionTtlMsMin: 500 };

let cluster: ProcessCluster;

beforeAll(async () => {
  cluster = await ProcessCluster.create(3, { lock: SHARED_LOCK });
  const odd = cluster.writeConfig('n3.config.json', { lock: ODD_LOCK });
  // n1 and n2 form the majority, so the first leader is one of them and its config's
  // rules are the ones the log agrees; n3 joins in with its own file.
  cluster.start('n1');
  cluster.start('n2');
  await cluster.waitForLeader(15_000);
  cluster.start('n3', { configPath: odd });
  await until(async () => {
    const digests = await rulesDigests();
    return digests.length === 3 && digests.every((digest) => digest === digests[0]);
  }, 'every node reports the same lock rules');
}, 40_000);

afterAll(async () => {
  await cluster?.stopAll();
  cluster?.remove();
});

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline)
      throw new Error(`not within ${timeoutMs} ms: ${what}; logs in ${cluster.dir}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function status(id: string): Promise<Record<string, unknown>> {
  return cluster.callNode(id, 'Status', {}, 5_000, 'Cluster');
}

async function rulesDigests(): Promise<string[]> {
  const all = await Promise.all(['n1', 'n2', 'n3'].map(status));
  return all
    .filter((each) => each.lock_rules_index !== '0')
    .map((each) => String(each.lock_rules_digest));
}

async function code(call: Promise<unknown>): Promise<grpc.status | 'ok'> {
  return call.then(
    () => 'ok' as const,
    (error: grpc.ServiceError) => error.code,
  );
}

describe('a node whose lock section differs from the others’', () => {
  it('warns, naming each field with its file’s and the log’s value', async () => {
    await until(
      async () =>
        readFileSync(cluster.logPath('n3'), 'utf8').includes('disagrees with the lock rules'),
      'n3 logs the disagreement',
    );
    const line = readFileSync(cluster.logPath('n3'), 'utf8')
      .split('\n')
      .find((each) => each.includes('disagrees with the lock rules'));
    expect(line).toContain('lock.sessionTtlMsMin file 500, log 1000');
    expect(line).toContain('lock.lockDelayMs file 0, log 2000');
    expect(JSON.parse(line ?? '{}').level).toBe(40); // pino's warn
    for (const id of ['n1', 'n2']) {
      expect(readFileSync(cluster.logPath(id), 'utf8')).toContain(
        'the lock rules in force match this config',
      );
    }
    const n3 = await status('n3');
    expect((n3.lock_rules as Record<string, string>).lock_delay_ms).toBe('2000');
    expect((n3.lock_rules as Record<string, string>).session_ttl_ms_min).toBe('1000');
  });

  it('refuses a TTL below the log’s minimum on every node, its own file notwithstanding', async () => {
    for (const id of ['n1', 'n2', 'n3']) {
      const request = { ttl_ms: '700', client_name: 'rules', request_id: newRequestId() };
      expect(await code(cluster.callNode(id, 'OpenSession', request))).toBe(
        grpc.status.INVALID_ARGUMENT,
      );
    }
  });

  it('keeps an expired holder’s lock closed for the log’s lock-delay, and every node agrees on the fence', async () => {
    const open = async (via: string, ttlMs: number) =>
      String(
        (
          await cluster.callNode(via, 'OpenSession', {
            ttl_ms: String(ttlMs),
            client_name: 'rules',
            request_id: newRequestId(),
          })
        ).session_id,
      );
    const acquire = (via: string, session: string) =>
      cluster.callNode(via, 'Acquire', {
        lock: 'rules/L',
        session_id: session,
        wait_ms: '0',
        request_id: newRequestId(),
        owner: via,
      });
    // A holder that is never kept alive: its session expires after 1 s.
    const doomed = await open('n1', 1_000);
    const first = await acquire('n1', doomed);
    expect(first.acquired).toBe(true);
    const other = await open('n3', 60_000);
    await until(async () => {
      const described = await cluster.callNode('n3', 'Describe', { lock: 'rules/L' });
      return (described.holders as unknown[]).length === 0;
    }, 'the holder expired');
    // Within the 2 s lock-delay of the log (n3's file says none): refused through n3.
    const during = await acquire('n3', other);
    expect(during.acquired).toBe(false);
    await until(
      async () => (await acquire('n3', other)).acquired === true,
      'granted after the delay',
    );
    const described = await cluster.callNode('n3', 'Describe', { lock: 'rules/L' });
    const token = String((described.holders as { fencing_token: string }[])[0]?.fencing_token);
    for (const id of ['n1', 'n2', 'n3']) {
      const fence = await cluster.callNode(id, 'ValidateFence', {
        lock: 'rules/L',
        fencing_token: token,
      });
      expect(fence.valid, id).toBe(true);
      const stale = await cluster.callNode(id, 'ValidateFence', {
        lock: 'rules/L',
        fencing_token: String(first.fencing_token),
      });
      expect(stale).toMatchObject({ valid: false, current_token: token });
    }
  }, 30_000);

  it('dlm rules prints the rules in force and how a config differs; dlm rules apply changes them everywhere', async () => {
    const odd = `${cluster.dir}/n3.config.json`;
    const shown = await cluster.dlm(['rules', '--config', odd, '--timeout-ms', '10000']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/lock\.lockDelayMs\s+2000/);
    expect(shown.stdout).toContain('lock.sessionTtlMsMin file 500, log 1000');
    const statusRun = await cluster.dlm(['status', '--config', cluster.configPath]);
    expect(statusRun.stdout).toMatch(/lock rules: digest [0-9a-f]{12}, set at index \d+/);

    const applied = await cluster.dlm(['rules', 'apply', '--config', odd, '--timeout-ms', '10000']);
    expect(applied.code, applied.stderr).toBe(0);
    await until(async () => {
      const all = await Promise.all(['n1', 'n2', 'n3'].map(status));
      return all.every((each) => (each.lock_rules as Record<string, string>).lock_delay_ms === '0');
    }, 'every node applied the new rules');
    // n1's file now disagrees, and it says so.
    await until(
      async () =>
        readFileSync(cluster.logPath('n1'), 'utf8').includes('lock.lockDelayMs file 2000, log 0'),
      'n1 logs the new disagreement',
    );
  }, 30_000);
});
