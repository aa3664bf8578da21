import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { Prng } from '../../src/util/prng.ts';
import {
  genericClient,
  HTTP2_PREFACE,
  randomBytes,
  randomString,
  randomValue,
  rawSocket,
  rawUnaryCall,
  rssKiB,
  unaryMethods,
} from '../support/fuzz.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Issue 15: a time-bounded fuzz of a live node (a real process): raw bytes on its client
 * and peer ports, and valid-shaped requests with hostile values (random bytes as a
 * message, then protobuf-valid messages with random strings, numbers and lists) on every
 * unary method, and random peer batches on the gRPC peer stream. The node must not
 * crash, its memory stays bounded, and every answer is a proper status: a result, or an
 * error the API means to give (never UNKNOWN or INTERNAL, which is what an uncaught
 * exception in a handler becomes). Seeded (DLM_FUZZ_SEED) for replay.
 */
const FUZZ_MS = 20_000;
const SEED = Number(process.env.DLM_FUZZ_SEED ?? 15);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// Membership and rule changes are left out: a random valid one is an operator's act
// (adding a member that never comes, rules that refuse everything), not an attack
// the node can refuse; issue 15's permissions are for that.
const SKIPPED = new Set(['AddMember', 'RemoveMember', 'SetLockRules']);
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

let cluster: ProcessCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

/** A random value of any msgpack shape, for peer batches. */
function randomShape(prng: Prng, depth = 0): unknown {
  const kinds = ['raft', 'forward', 'forwardAccepted', 'forwardRefused', 'peerAddresses'];
  switch (prng.intBetween(0, depth > 2 ? 3 : 6)) {
    case 0:
      return null;
    case 1:
      return prng.intBetween(-(2 ** 31), 2 ** 31);
    case 2:
      return randomString(prng).slice(0, 50);
    case 3:
      return prng.chance(0.5);
    case 4:
      return Array.from({ length: prng.intBetween(0, 4) }, () => randomShape(prng, depth + 1));
    default: {
      const object: Record<string, unknown> = { kind: prng.pick(kinds), from: 'n9', to: 'n1' };
      for (const key of ['message', 'proposalId', 'data', 'index', 'term', 'addresses', 'type']) {
        if (prng.chance(0.5)) object[key] = randomShape(prng, depth + 1);
      }
      return object;
    }
  }
}

const BAD_CODES = new Set([grpc.status.UNKNOWN, grpc.status.INTERNAL]);

describe('fuzz against a live node', () => {
  it(`raw bytes and hostile requests for ${FUZZ_MS / 1000} s: no crash, bounded memory, every answer a proper status`, async () => {
    cluster = await ProcessCluster.create(1);
    const c = cluster;
    c.startAll();
    await c.waitForLeader(20_000);
    const node = c.nodes[0];
    const pid = c.pid('n1');
    if (node === undefined || pid === undefined) throw new Error('no n1');
    const rss = (): number => rssKiB(pid);
    const rssBeforeKiB = rss();
    let rssPeakKiB = rssBeforeKiB;
    const prng = new Prng(SEED);
    const methods = unaryMethods(SKIPPED);
    const api = genericClient(node.clientAddress, grpc.credentials.createInsecure());
    const peer = genericClient(node.peerAddress, grpc.credentials.createInsecure());
    const codes = new Map<string, number>();
    const bad: string[] = [];
    const call = async (client: grpc.Client, path: string, body: Buffer, what: string) => {
      const { code, details } = await rawUnaryCall(client, path, body);
      const key = grpc.status[code] ?? String(code);
      codes.set(key, (codes.get(key) ?? 0) + 1);
      if (BAD_CODES.has(code)) bad.push(`${what}: ${key} ${details}`);
    };
    const peerStream = peer.makeBidiStreamRequest(
      '/dlm.raft.v1.Raft/Stream',
      (value: object) => value as Buffer,
      (bytes: Buffer) => bytes,
    );
    peerStream.on('error', () => {});
    peerStream.on('data', () => {});
    const raftProto = loadSync(join(ROOT, 'proto/raft.proto'), { keepCase: true });
    const wire = (raftProto['dlm.raft.v1.Raft'] as grpc.ServiceDefinition)
      .Stream as grpc.MethodDefinition<object, object>;
    const started = Date.now();
    let rounds = 0;
    // Bounded in time (FUZZ_MS) and in rounds.
    while (Date.now() - started < FUZZ_MS && rounds < 100_000) {
      rounds++;
      const work: Promise<void>[] = [];
      for (let i = 0; i < 8; i++) {
        const method = prng.pick(methods);
        if (prng.chance(0.3)) {
          work.push(call(api, method.path, randomBytes(prng, 300), `${method.name} raw`));
        } else {
          const request: Record<string, unknown> = {};
          for (const field of method.fields) {
            if (prng.chance(0.8)) request[field.name] = randomValue(prng, field);
          }
          let body: Buffer;
          try {
            body = method.serialize(request);
          } catch {
            continue;
          }
          work.push(call(api, method.path, body, `${method.name} shaped`));
        }
      }
      if (rounds % 4 === 0) {
        const target = prng.chance(0.5) ? node.clientAddress : node.peerAddress;
        const preface = prng.chance(0.5) ? HTTP2_PREFACE : Buffer.alloc(0);
        work.push(rawSocket(target, Buffer.concat([preface, randomBytes(prng, 2_000)])));
      }
      const batch = prng.chance(0.5)
        ? packr.pack(Array.from({ length: prng.intBetween(0, 5) }, () => randomShape(prng)))
        : randomBytes(prng, 200);
      peerStream.write(
        (wire.requestSerialize as (value: object) => Buffer)({
          from: prng.chance(0.5) ? 'n9' : randomString(prng).slice(0, 20),
          to: 'n1',
          payload: batch,
        }),
      );
      await Promise.all(work);
      if (rounds % 20 === 0) rssPeakKiB = Math.max(rssPeakKiB, rss());
    }
    peerStream.end();
    const total = [...codes.values()].reduce((sum, count) => sum + count, 0);
    console.log(
      `fuzz seed ${SEED}: ${rounds} rounds, ${total} calls in ${Date.now() - started} ms; codes ${JSON.stringify(Object.fromEntries(codes))}; node RSS ${rssBeforeKiB} KiB before, peak ${rssPeakKiB} KiB`,
    );
    // Still alive and serving.
    expect(c.isRunning('n1')).toBe(true);
    await call(api, '/dlm.v1.Cluster/Status', Buffer.alloc(0), 'Status after');
    expect(codes.get('OK') ?? 0).toBeGreaterThan(0);
    expect(bad).toEqual([]);
    expect(rssPeakKiB - rssBeforeKiB).toBeLessThan(200 * 1024);
    const log = readFileSync(c.logPath('n1'), 'utf8');
    expect(log.split('\n').filter((line) => /TypeError|"level":60/.test(line))).toEqual([]);
    api.close();
    peer.close();
  }, 90_000);
});
