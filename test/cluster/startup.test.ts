import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeIndexKey } from '../../src/storage/keys.ts';
import { type Db, openSublevels } from '../../src/storage/level-layout.ts';
import { logIndex } from '../../src/util/ids.ts';
import { openSession } from '../support/lock-load.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * What `dlm serve` refuses at start-up, as an operator sees it: the process exits 1 and
 * its error names what is wrong (the config field; the database, sublevel and index).
 */
let cluster: ProcessCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

describe('start-up refusals of real processes', () => {
  it('a bad config is refused, naming the field', async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    const config = JSON.parse(readFileSync(c.configPath, 'utf8'));
    config.nodes[1].clientAddress = 'localhost';
    config.raft.electionTimeoutTicks = 'ten';
    const badPath = join(c.dir, 'bad.config.json');
    writeFileSync(badPath, JSON.stringify(config));
    for (const args of [
      ['serve', '--config', badPath, '--node', 'n1'],
      ['cluster', '--config', badPath],
    ]) {
      const run = await c.dlm(args, 20_000);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr).toContain(badPath);
      expect(run.stderr).toContain('nodes[1].clientAddress: expected "host:port", got "localhost"');
      expect(run.stderr).toContain('raft.electionTimeoutTicks');
    }
  }, 60_000);

  it('a corrupted log value is refused at start, naming the database and the index', async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    c.startAll();
    const leader = await c.waitForLeader(15_000);
    const session = await openSession(c, 'startup');
    for (let i = 0; i < 5; i++) {
      await c.callAny('Acquire', {
        lock: `startup/${i}`,
        session_id: session,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
        request_id: newRequestId(),
        owner: 's',
      });
    }
    const follower = c.founders.find((node) => node.id !== leader)?.id ?? '';
    // The last of those writes, once the follower holds it (it may lag the majority).
    const atLeader = await c.callNode(leader, 'Status', {}, 10_000, 'Cluster');
    const damagedIndex = Number(atLeader.commit_index);
    for (let applied = 0; applied < damagedIndex; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const status = await c.callNode(follower, 'Status', {}, 10_000, 'Cluster');
      applied = Number(status.applied_index);
    }
    await c.kill(follower);

    // Flip one bit of a log record behind the node's back, the way a disk might.
    const path = join(c.dir, 'data', follower);
    const db: Db = new Level<Uint8Array, Uint8Array>(path, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    await db.open({ createIfMissing: false });
    const { log } = openSublevels(db);
    const key = encodeIndexKey(logIndex(damagedIndex));
    const value = await log.get(key);
    expect(value, `entry ${damagedIndex} is in ${path}`).toBeDefined();
    const damaged = new Uint8Array(value ?? []);
    damaged[damaged.byteLength - 1] = (damaged[damaged.byteLength - 1] ?? 0) ^ 0x01;
    await log.put(key, damaged);
    await db.close();

    const run = await c.dlm(['serve', '--config', c.configPath, '--node', follower], 20_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`storage corrupt: ${path} log index ${damagedIndex}`);
    // The other two still serve.
    const after = await c.callAny('Describe', { lock: 'startup/4' });
    expect((after.holders as unknown[]).length).toBe(1);
  }, 90_000);
});
