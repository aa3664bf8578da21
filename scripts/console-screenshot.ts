/**
 * Takes docs/console.png, the README's picture of the web console: a 3-node cluster of
 * real processes with a few clients holding and waiting for locks, seen from a follower
 * in Debian's chromium (puppeteer-core). Bounded: a fixed handful of calls, then it
 * stops the cluster.
 *
 *   npm run console:screenshot [-- --out FILE]
 */
import { spawnSync } from 'node:child_process';
import puppeteer from 'puppeteer-core';
import { newRequestId, ProcessCluster } from '../src/tools/process-cluster.ts';

const outIndex = process.argv.indexOf('--out');
const out = outIndex > 0 ? (process.argv[outIndex + 1] ?? '') : 'docs/console.png';
const chromium = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim();
if (chromium === '') throw new Error('needs chromium (Debian: apt-get install chromium)');

const cluster = await ProcessCluster.create(3);
try {
  cluster.startAll();
  const leader = await cluster.waitForLeader(30_000);
  const viewer = cluster.nodes.find((node) => node.id !== leader);
  if (viewer === undefined) throw new Error('no follower');
  const call = (method: string, request: object) =>
    cluster.call(viewer.id, method, request, 10_000);
  const session = async (name: string): Promise<string> =>
    String(
      (
        await call('OpenSession', {
          ttl_ms: '15000',
          client_name: name,
          request_id: newRequestId(),
        })
      ).session_id,
    );
  const acquire = (lock: string, sessionId: string, owner: string, waitMs = 0) =>
    call('Acquire', {
      lock,
      session_id: sessionId,
      wait_ms: String(waitMs),
      request_id: newRequestId(),
      owner,
    });
  const billing = await session('billing-worker');
  const reports = await session('nightly-reports');
  const api = await session('api-7f9c');
  // A hand-off first, so the contended table has one.
  const first = await acquire('orders/42', billing, 'billing-worker@host-a');
  const handed = acquire('orders/42', reports, 'reports@host-b', 20_000);
  await new Promise((resolve) => setTimeout(resolve, 700));
  await call('Release', {
    lock: 'orders/42',
    session_id: billing,
    fencing_token: String(first.fencing_token),
    request_id: newRequestId(),
  });
  await handed;
  await acquire('inventory/sku-1138', api, 'api-7f9c');
  await acquire('leader-election/payments', billing, 'billing-worker@host-a');
  // Waiters still queued when the picture is taken (their calls are left to time out).
  void acquire('orders/42', billing, 'billing-worker@host-a', 12_000).catch(() => {});
  void acquire('inventory/sku-1138', reports, 'reports@host-b', 12_000).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 2_500));

  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 760 });
    await page.goto(`http://${viewer.metricsAddress}/`);
    await page.waitForFunction(
      "document.querySelectorAll('#sessions tr[data-session]').length === 3",
      {
        timeout: 10_000,
      },
    );
    await page.screenshot({ path: out, fullPage: true });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
  }
} finally {
  await cluster.stopAll();
  cluster.remove();
}
