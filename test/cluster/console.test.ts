import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * The web console in a real browser (Debian's chromium, driven by puppeteer-core) against
 * real `dlm serve` processes: it shows the leader, a held lock with its token, a waiter,
 * the hand-off on release, and a new leader after the old one is killed, all in one page
 * load; then the banner of a node that knows no leader. Screenshots go to
 * artifacts/console/ (gitignored) to be looked at.
 */
const CHROMIUM = ['chromium', 'chromium-browser', 'google-chrome']
  .map((name) => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim())
  .find((path) => path !== '');
const MISSING = 'SKIPPED: no chromium to drive (Debian: apt-get install chromium; .ci/run does)';
if (CHROMIUM === undefined) console.warn(`test/cluster/console.test.ts: ${MISSING}`);

const ARTIFACTS = fileURLToPath(new URL('../../artifacts/console/', import.meta.url));
const UI_TIMEOUT_MS = 20_000;

let cluster: ProcessCluster | null = null;
let browser: Browser | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

afterAll(async () => {
  await browser?.close();
});

async function openConsole(address: string): Promise<Page> {
  browser ??= await puppeteer.launch({
    executablePath: CHROMIUM ?? 'chromium',
    headless: true,
    // Root in a container: chromium's sandbox needs namespaces it may not get.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const offsite: string[] = [];
  page.on('request', (request) => {
    if (!request.url().startsWith(`http://${address}/`)) offsite.push(request.url());
  });
  page.on('pageerror', (error) => {
    throw error;
  });
  await page.goto(`http://${address}/`, { waitUntil: 'domcontentloaded' });
  // Marks this page load: a reload would lose it.
  await page.evaluate("window.loadMark = 'first load'");
  expect(offsite, 'the page loads nothing from elsewhere').toEqual([]);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

/** Waits until `check` (run in the page, on its DOM) is true. */
async function until(page: Page, what: string, check: string): Promise<void> {
  try {
    await page.waitForFunction(check, { timeout: UI_TIMEOUT_MS, polling: 100 });
  } catch (error) {
    await shot(page, `failed-${what.replace(/\W+/g, '-')}`);
    throw new Error(`the console never showed ${what}: ${String(error)}`);
  }
}

/** What a person reads on the page has no leaked object, undefined or NaN in it. */
async function expectReadable(page: Page): Promise<void> {
  const body = String(await page.evaluate('document.body.innerText'));
  expect(body).not.toMatch(/\[object |undefined|NaN/);
}

/** The token the locks table shows for `lock`, as text on the page. */
const shownToken = (lock: string): string =>
  `document.querySelector('#locks tr[data-lock="${lock}"] .token')?.textContent`;

const text = (selector: string): string =>
  `(document.querySelector(${JSON.stringify(selector)})?.textContent ?? '')`;

describe.skipIf(CHROMIUM === undefined)(
  `web console in chromium${CHROMIUM === undefined ? ` (${MISSING})` : ''}`,
  () => {
    it('shows the leader, a holder with its token, a waiter, the hand-off and a new leader without a reload', async () => {
      cluster = await ProcessCluster.create(3);
      const c = cluster;
      c.startAll();
      const leader = await c.waitForLeader(30_000);
      const viewer = c.nodes.find((node) => node.id !== leader);
      if (viewer === undefined) throw new Error('no follower');
      const page = await openConsole(viewer.metricsAddress);

      await until(
        page,
        'the leader',
        `document.querySelector('tr[data-node="${leader}"]')?.dataset.role === 'leader' && ${text('#leader')} === 'leader ${leader}'`,
      );
      expect(await page.$$eval('#cluster tbody tr', (rows) => rows.length)).toBe(3);

      // A holds orders/42 (through the viewer, which forwards to the leader).
      const call = (method: string, request: object, deadlineMs = 10_000) =>
        c.call(viewer.id, method, request, deadlineMs);
      const a = String(
        (
          await call('OpenSession', {
            ttl_ms: '60000',
            client_name: 'billing-worker',
            request_id: newRequestId(),
          })
        ).session_id,
      );
      const b = String(
        (
          await call('OpenSession', {
            ttl_ms: '60000',
            client_name: 'report-job',
            request_id: newRequestId(),
          })
        ).session_id,
      );
      const first = await call('Acquire', {
        lock: 'orders/42',
        session_id: a,
        wait_ms: '0',
        request_id: newRequestId(),
        owner: 'worker-a',
      });
      expect(first.acquired).toBe(true);
      const tokenA = String(first.fencing_token);
      await until(
        page,
        `orders/42 held by worker-a with token ${tokenA}`,
        `${shownToken('orders/42')} === '${tokenA}' && document.querySelector('#locks tr[data-lock="orders/42"]').textContent.includes('worker-a')`,
      );

      // B waits for it.
      const waiting = call(
        'Acquire',
        {
          lock: 'orders/42',
          session_id: b,
          wait_ms: '30000',
          request_id: newRequestId(),
          owner: 'worker-b',
        },
        40_000,
      );
      await until(
        page,
        'worker-b waiting',
        `document.querySelector('#locks tr[data-lock="orders/42"] .waiter[data-session="${b}"]')?.textContent.includes('worker-b') === true`,
      );
      await until(
        page,
        'both sessions',
        `document.querySelectorAll('#sessions tr[data-session]').length === 2`,
      );
      expect(
        await page.$eval(`#sessions tr[data-session="${a}"]`, (row) => row.textContent),
      ).toContain('billing-worker');
      await shot(page, '1-held-and-waiting');
      await expectReadable(page);

      // A releases: the lock passes to B with a higher token.
      await call('Release', {
        lock: 'orders/42',
        session_id: a,
        fencing_token: tokenA,
        request_id: newRequestId(),
      });
      const second = await waiting;
      expect(second.acquired).toBe(true);
      const tokenB = String(second.fencing_token);
      expect(BigInt(tokenB)).toBeGreaterThan(BigInt(tokenA));
      await until(
        page,
        `the hand-off to worker-b with token ${tokenB}`,
        `${shownToken('orders/42')} === '${tokenB}' && document.querySelector('#locks tr[data-lock="orders/42"]').textContent.includes('worker-b') && !document.querySelector('#locks tr[data-lock="orders/42"] .waiter')`,
      );
      await until(
        page,
        'orders/42 among the contended locks',
        `document.querySelector('#contended tr[data-lock="orders/42"]')?.children[1]?.textContent === '1' && document.querySelector('#contended tr[data-lock="orders/42"]').children[2]?.textContent === '1'`,
      );
      await shot(page, '2-handed-off');
      await expectReadable(page);

      // The prefix filter: another prefix hides the lock, its own shows it again.
      await page.type('#prefix', 'inventory/');
      await until(
        page,
        'an empty filtered list',
        `${text('#locks tbody')}.includes('no lock in use starts with')`,
      );
      await page.evaluate(
        "(() => { const input = document.querySelector('#prefix'); input.value = 'orders/'; input.dispatchEvent(new Event('input')); })()",
      );
      await until(
        page,
        'the filtered list',
        `!!document.querySelector('#locks tr[data-lock="orders/42"]')`,
      );

      // Kill the leader: the page, still the same load, shows another one.
      await c.kill(leader);
      await until(
        page,
        'a new leader',
        `(() => { const l = ${text('#leader')}; return l.startsWith('leader ') && l !== 'leader ${leader}'; })() && document.querySelector('tr[data-node="${leader}"]')?.dataset.health === 'unreachable'`,
      );
      expect(await page.evaluate('window.loadMark')).toBe('first load');
      const newLeader = (await page.$eval('#leader', (node) => node.textContent ?? '')).slice(
        'leader '.length,
      );
      expect(c.nodes.map((node) => node.id)).toContain(newLeader);
      expect(newLeader).not.toBe(leader);
      expect(
        await page.evaluate(`document.querySelector('tr[data-node="${newLeader}"]').dataset.role`),
      ).toBe('leader');
      await shot(page, '3-new-leader');
      await expectReadable(page);

      // Kill the other live node (the viewer may have become the leader itself): the
      // viewer alone knows no leader, and says so.
      const other = c.nodes.find((node) => node.id !== leader && node.id !== viewer.id);
      if (other === undefined) throw new Error('no third node');
      await c.kill(other.id);
      await until(
        page,
        'the no-leader banner',
        `!document.querySelector('#banner').hidden && ${text('#banner')}.includes('${viewer.id} knows no leader')`,
      );
      await shot(page, '4-no-leader');
      expect(await page.evaluate('window.loadMark')).toBe('first load');
      await page.close();
    });
  },
);
