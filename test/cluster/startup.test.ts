import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { LevelStorage, type StoredIdentity } from '../../src/storage/index.ts';
import { encodeIndexKey } from '../../src/storage/keys.ts';
import { type Db, openSublevels } from '../../src/storage/level-layout.ts';
import { logIndex } from '../../src/util/ids.ts';
import { openSession } from '../support/lock-load.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * What `dlm serve` refuses at start-up, as an operator sees it: the process exits 1 and
 * its error names what is wrong (the config field; the database, sublevel and index).
 */
let cluster: ProcessCluster | null = null;
let other: ProcessCluster | null = null;

afterEach(async () => {
  for (const c of [cluster, other]) {
    await c?.stopAll();
    c?.remove();
  }
  cluster = null;
  other = null;
});

/** The identity stored in a stopped node's database. */
async function storedIdentity(path: string): Promise<StoredIdentity | null> {
  const storage = await LevelStorage.open(path);
  const identity = storage.identity;
  await storage.close();
  return identity;
}

/** Replaces a stopped node's data directory with a copy of another (a restored backup). */
function restoreInto(target: string, backup: string): void {
  rmSync(target, { recursive: true, force: true });
  cpSync(backup, target, { recursive: true });
}

/**
 * Waits until every founder holds the cluster id. The generating founder may start
 * before the others listen, and then they learn the id only once its link reconnects.
 */
async function untilIdentified(c: ProcessCluster): Promise<string> {
  const learned = 'learned the cluster id from a peer and saved it';
  const deadline = Date.now() + 20_000;
  for (;;) {
    const started = readFileSync(c.logPath('n1'), 'utf8').match(
      /"clusterId":"([^"]+)"[^\n]*"node started"/,
    );
    const others = ['n2', 'n3'].every((id) =>
      readFileSync(c.logPath(id), 'utf8').includes(learned),
    );
    if (started?.[1] !== undefined && others) return started[1];
    if (Date.now() > deadline)
      throw new Error(`the founders did not all learn the cluster id; logs in ${c.dir}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function holdOneLock(c: ProcessCluster, lock: string): Promise<string> {
  const session = await openSession(c, 'identity');
  const acquired = await c.acquireAny({
    lock,
    session_id: session,
    mode: 'EXCLUSIVE',
    wait_ms: '0',
    owner: 'holder',
  });
  expect(acquired.acquired).toBe(true);
  return String(acquired.fencing_token);
}

async function holderTokens(c: ProcessCluster, lock: string): Promise<string[]> {
  const described = await c.callAny('Describe', { lock });
  return (described.holders as { fencing_token: string }[]).map((holder) => holder.fencing_token);
}

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
      await c.acquireAny({
        lock: `startup/${i}`,
        session_id: session,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
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

  it("a node started on another cluster's data directory exits naming both cluster ids, and the cluster keeps its state", async () => {
    // Cluster A runs through a few leader transfers, so its terms are ahead of B's.
    other = await ProcessCluster.create(3);
    const a = other;
    a.startAll();
    let leaderOfA = await a.waitForLeader(15_000);
    for (let moved = 0; moved < 3; ) {
      try {
        const answer = await a.callNode(leaderOfA, 'TransferLeadership', {}, 10_000, 'Cluster');
        leaderOfA = String(answer.leader_id);
        moved++;
      } catch (error) {
        // A transfer the target did not win within one election timeout (200 ms here) is
        // abandoned, which a loaded machine sees now and then; only the terms matter.
        const code = (error as grpc.ServiceError).code;
        if (code !== grpc.status.DEADLINE_EXCEEDED && code !== grpc.status.UNAVAILABLE) throw error;
        leaderOfA = await a.waitForLeader(15_000);
      }
    }
    await holdOneLock(a, 'a/lock');
    const aClusterId = await untilIdentified(a);
    await a.stopAll();
    const aDir = join(a.dir, 'data', 'n3');
    expect(await storedIdentity(aDir)).toEqual({ clusterId: aClusterId, nodeId: 'n3' });

    // Cluster B serves a lock; its n3 is then restarted on A's n3 directory.
    cluster = await ProcessCluster.create(3);
    const b = cluster;
    b.startAll();
    await b.waitForLeader(15_000);
    const token = await holdOneLock(b, 'b/lock');
    const bClusterId = await untilIdentified(b);
    expect(bClusterId).not.toBe(aClusterId);
    await b.kill('n3');
    const bDir = join(b.dir, 'data', 'n3');
    restoreInto(bDir, aDir);

    const run = await b.dlm(['serve', '--config', b.configPath, '--node', 'n3'], 30_000);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`node n3 belongs to cluster ${aClusterId}`);
    expect(run.stderr).toContain(`belong to cluster ${bClusterId}`);
    expect(run.stderr).toContain(`data directory ${bDir}`);

    // B never took A's state or term: the lock is held as before, and B still commits.
    expect(await holderTokens(b, 'b/lock')).toEqual([token]);
    expect(await holderTokens(b, 'a/lock')).toEqual([]);
    await holdOneLock(b, 'b/after');
    const dropped = readFileSync(b.logPath('n1'), 'utf8') + readFileSync(b.logPath('n2'), 'utf8');
    expect(dropped).toContain('dropped a peer message from another cluster');
  }, 120_000);

  it("a node started on another member's data directory is refused, naming both node ids", async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    c.startAll();
    const leader = await c.waitForLeader(15_000);
    const token = await holdOneLock(c, 'same/lock');
    const [source, target] = c.founders.filter((node) => node.id !== leader).map((node) => node.id);
    if (source === undefined || target === undefined) throw new Error('two followers expected');
    // Restore `target` from `source`'s backup: both stopped, so the copy is consistent.
    await c.kill(target);
    await c.kill(source);
    const targetDir = join(c.dir, 'data', target);
    restoreInto(targetDir, join(c.dir, 'data', source));
    c.start(source);

    const run = await c.dlm(['serve', '--config', c.configPath, '--node', target], 30_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `node ${target} refused to start: the database in ${targetDir} belongs to node ${source}, not to ${target}`,
    );
    expect(await holderTokens(c, 'same/lock')).toEqual([token]);
    await holdOneLock(c, 'same/after');
  }, 90_000);
});
