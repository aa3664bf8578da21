import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Issue 15: a Watch consumer that never reads, in a process of its own, cannot hold a
 * node's memory. It opens many Watch streams over raw HTTP/2 with a 1 KiB flow-control
 * window and never reads them; the node buffers at most watchEventsBufferedMax events
 * each, ends each with RESOURCE_EXHAUSTED, and resets it watchCutoffGraceMs later.
 */
const STREAMS = 200;
/** Runs in the child: opens STREAMS paused Watch streams, reports each one's end. */
const NEVER_READS = `
const http2 = require('node:http2');
const session = http2.connect('http://' + process.argv[1], { settings: { initialWindowSize: 1024 } });
session.on('error', () => {});
let closed = 0;
for (let i = 0; i < Number(process.argv[2]); i++) {
  const stream = session.request({
    ':method': 'POST', ':path': '/dlm.v1.Lock/Watch',
    'content-type': 'application/grpc', te: 'trailers',
  });
  stream.on('error', () => {});
  stream.on('close', () => { closed++; console.log('closed ' + closed + ' rst ' + stream.rstCode); });
  stream.end(Buffer.from([0, 0, 0, 0, 0]));
  stream.pause();
}
setInterval(() => {}, 1000);
`;

let cluster: ProcessCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

describe('a Watch consumer that never reads', () => {
  it('is cut off after a bounded buffer; the node keeps serving and its memory stays bounded', async () => {
    cluster = await ProcessCluster.create(1, {
      runtime: { watchEventsBufferedMax: 16, watchCutoffGraceMs: 1_000 },
    });
    const c = cluster;
    c.startAll();
    await c.waitForLeader(20_000);
    const node = c.nodes[0];
    const pid = c.pid('n1');
    if (node === undefined || pid === undefined) throw new Error('no n1');
    const rssBeforeKiB = rssKiB(pid);
    const child = spawn(
      process.execPath,
      ['-e', NEVER_READS, node.clientAddress, String(STREAMS)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let closedStreams = 0;
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      closedStreams = (output.match(/^closed /gm) ?? []).length;
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      // Events for every watcher: each grant and release is one, bounded at 200 pairs.
      const client = new DlmClient({ endpoints: [node.clientAddress] });
      const session = await client.openSession({ ttlMs: 10_000 });
      let rssPeakKiB = 0;
      for (let i = 0; i < 200 && closedStreams < STREAMS; i++) {
        const handle = await session.acquire(`unread/${i % 4}`, { waitMs: 0 });
        await handle.release();
        rssPeakKiB = Math.max(rssPeakKiB, rssKiB(pid));
      }
      const deadline = Date.now() + 15_000;
      while (closedStreams < STREAMS && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        rssPeakKiB = Math.max(rssPeakKiB, rssKiB(pid));
      }
      // The node still answers, on a fresh lock.
      const after = await session.acquire('unread/after', { waitMs: 0 });
      await after.release();
      await session.close();
      client.close();
      console.log(
        `watch unread: ${closedStreams}/${STREAMS} streams cut off; node RSS ${rssBeforeKiB} KiB before, peak ${rssPeakKiB} KiB`,
      );
      // Every stream ended by the node (reset: rst 8 = CANCEL), none left holding a buffer.
      expect(closedStreams).toBe(STREAMS);
      expect(output).toMatch(/rst 8/);
      // 200 streams x 16 events is small; the bound is what matters: well under 100 MiB more.
      expect(rssPeakKiB - rssBeforeKiB).toBeLessThan(100 * 1024);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);
});
