/**
 * Review of the encode-once merge (949c28b): a normal entry framed by hand, the call's
 * trace passed explicitly, pooled trace ids, UnaryScope as a class. Every probe here
 * held; they are kept as regression tests of the claims.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry as decodePayload } from '../../src/node/entry-codec.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import { continueTrace } from '../../src/node/trace.ts';
import type { Entry } from '../../src/raft/types.ts';
import { encodeIndexKey } from '../../src/storage/keys.ts';
import { type Db, openSublevels } from '../../src/storage/level-layout.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  RpcError,
  sleep,
  TRANSPORTS,
  type Transport,
} from '../api/harness.ts';

// The storage codec's pinned options (src/storage/codec.ts), for the old encoding.
const reference = new Packr({
  useRecords: false,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
  sequential: false,
  variableMapSize: false,
  useFloat32: 0,
  useTimestamp32: false,
  encodeUndefinedAsNil: false,
  largeBigIntToFloat: false,
  mapsAsObjects: true,
  int64AsType: 'number',
  copyBuffers: false,
});

describe('encode-once: a normal entry on a real LevelDB', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('crosses every msgpack width of term and data length, and reads back the same after reopen, bytes as msgpackr wrote them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dlm-review-encode-'));
    dirs.push(dir);
    const path = join(dir, 'n1');
    const a = nodeId('a');
    const storage = await LevelStorage.open(path, { bootstrap: { voters: [a], learners: [] } });
    // Indexes 2..301 cross 0x7f/0x80 and 0xff/0x100; terms climb through every width.
    const terms = [1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
    const lengths = [0, 1, 0xff, 0x100, 0xffff, 0x10000];
    const entries: Entry[] = [];
    for (let i = 0; i < 300; i++) {
      const index = i + 2;
      const entryTerm = terms[Math.min(terms.length - 1, Math.floor(i / 30))] as number;
      const length = lengths[i % lengths.length] as number;
      // A view into a bigger buffer, at an odd offset, as a decoded peer message gives.
      const backing = new Uint8Array(length + 7).map((_, k) => (k * 31 + index) & 0xff);
      entries.push({
        kind: 'normal',
        index: logIndex(index),
        term: term(entryTerm),
        data: backing.subarray(3, 3 + length),
      });
    }
    for (let at = 0; at < entries.length; at += 50) {
      await storage.persist({ entries: entries.slice(at, at + 50) });
    }
    await storage.close();

    const db: Db = new Level<Uint8Array, Uint8Array>(path, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    await db.open({ createIfMissing: false });
    try {
      const log = openSublevels(db).log;
      for (const entry of entries) {
        if (entry.kind !== 'normal') continue;
        const stored = await log.get(encodeIndexKey(entry.index));
        const payload = reference.pack([entry.index, entry.term, 1, entry.data]);
        const same = Buffer.from(stored as Uint8Array)
          .subarray(4)
          .equals(Buffer.concat([Buffer.from([1]), payload]));
        expect(same, `entry ${entry.index}`).toBe(true);
      }
    } finally {
      await db.close();
    }

    const reopened = await LevelStorage.open(path);
    try {
      const read = reopened.entries(logIndex(2), logIndex(302), Number.MAX_SAFE_INTEGER);
      expect(read).toHaveLength(entries.length);
      const differ = entries.filter((e, k) => {
        const r = read[k];
        return (
          r === undefined ||
          r.kind !== 'normal' ||
          e.kind !== 'normal' ||
          r.index !== e.index ||
          r.term !== e.term ||
          !Buffer.from(r.data).equals(Buffer.from(e.data))
        );
      });
      expect(differ.map((e) => e.index)).toEqual([]);
    } finally {
      await reopened.close();
    }
  }, 60_000);
});

describe('encode-once: pooled trace ids', () => {
  it('continued and new traces interleaved across many refills: fresh, well-formed, no id handed out twice', () => {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const seen = new Set<string>();
    // 8 or 24 bytes a call; 20,000 calls go through the 4 KiB pool about 60 times.
    for (let i = 0; i < 20_000; i++) {
      const trace = continueTrace(i % 3 === 0 ? parent : null);
      for (const id of trace.parentSpanId === null
        ? [trace.traceId, trace.spanId]
        : [trace.spanId]) {
        expect(id).toMatch(/^[0-9a-f]+$/);
        expect(/^0+$/.test(id)).toBe(false);
        expect(seen.has(id)).toBe(false);
        seen.add(id);
      }
    }
  });
});

/** A write `from` forwards to the leader carrying a command of `type`. */
function isForward(message: PeerMessage, from: string, type: string): boolean {
  return (
    message.kind === 'forward' &&
    message.from === from &&
    decodePayload(message.data).command.type === type
  );
}

describe.each(TRANSPORTS)('encode-once: an undelivered grant (%s)', (transport: Transport) => {
  let cluster: ApiCluster | null = null;
  afterEach(async () => {
    cluster?.network.releaseHeld();
    await cluster?.stop();
    cluster = null;
  });

  it('is given back exactly once, by a Withdraw carrying the Acquire call’s own span', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const follower = await c.followerId();
    const leader = await c.leaderId();
    const session = await c.openSession(follower, 60_000);
    const forwards: PeerMessage[] = [];
    // Hold the Acquire's forward; watch every forward after it.
    c.network.hold((message) => {
      if (message.kind === 'forward' && message.from === follower) forwards.push(message);
      return isForward(message, follower, 'Acquire');
    });
    const caller = c.via(follower, transport);
    const answer = caller
      .call(
        'Acquire',
        {
          session_id: session,
          lock: 'review-giveback',
          request_id: c.requestId(),
          owner: 'r',
          wait_ms: '0',
        },
        { deadlineMs: 300 },
      )
      .catch((error: unknown) => error);
    await eventually(() => c.network.heldCount === 1, 5_000);
    const failure = await answer;
    expect(failure).toBeInstanceOf(RpcError);
    // The deadline passed; the held write applies now and grants: nobody hears of it.
    await sleep(transport === 'stream' ? 50 : 100);
    c.network.hold((message) => {
      if (message.kind === 'forward' && message.from === follower) forwards.push(message);
      return false;
    });
    c.network.releaseHeld();
    c.network.hold((message) => {
      if (message.kind === 'forward' && message.from === follower) forwards.push(message);
      return false;
    });
    const locks = c.nodes.get(leader)?.locks;
    await eventually(() => (locks?.describe('review-giveback').holders.length ?? 1) === 0, 10_000);
    await sleep(300);
    const acquires = forwards.filter((m) => isForward(m, follower, 'Acquire'));
    const withdraws = forwards.filter((m) => isForward(m, follower, 'Withdraw'));
    expect(acquires).toHaveLength(1);
    expect(withdraws).toHaveLength(1);
    const traceOf = (m: PeerMessage) => (m.kind === 'forward' ? m.traceparent : undefined);
    expect(traceOf(withdraws[0] as PeerMessage)).toBe(traceOf(acquires[0] as PeerMessage));
    expect(traceOf(acquires[0] as PeerMessage)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  }, 30_000);
});
