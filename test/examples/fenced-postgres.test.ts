import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { LineProcess } from '../support/line-process.ts';
import { type Postgres, startPostgres } from '../support/postgres.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * The GC-pause story on a real PostgreSQL, every actor a real process: writer A holds
 * the lock and writes; A is frozen (SIGSTOP) past its TTL; B gets the lock with a later
 * token and writes; A is resumed and makes the write it had checked its lease for
 * before the freeze; the fenced write refuses it and the row keeps B's value.
 * (examples/fenced-postgres/README.md tells the same story.)
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WRITER = fileURLToPath(new URL('../../examples/fenced-postgres/writer.js', import.meta.url));
const KEY = 'account/7';
/** Long enough that a keepalive late on a loaded machine does not end A's lease early. */
const A_TTL_MS = 4_000;
const STEP_TIMEOUT_MS = 30_000;

let postgres: Postgres | null = null;
let cluster: ProcessCluster | null = null;
let db: pg.Pool | null = null;
const writers: LineProcess[] = [];

afterAll(async () => {
  for (const writer of writers) {
    writer.signal('SIGCONT');
    writer.signal('SIGKILL');
  }
  await db?.end();
  await cluster?.stopAll();
  cluster?.remove();
  await postgres?.stop();
});

function writer(name: string, ttlMs: number, endpoints: string, url: string): LineProcess {
  const args = [WRITER, '--endpoints', endpoints, '--database', url, '--key', KEY];
  const process_ = new LineProcess(
    name,
    process.execPath,
    [...args, '--name', name, '--ttl-ms', String(ttlMs), '--wait-ms', String(STEP_TIMEOUT_MS)],
    ROOT,
  );
  writers.push(process_);
  return process_;
}

/** The row as the database has it, read here rather than through the example's code. */
async function readRow(pool: pg.Pool, key: string): Promise<unknown> {
  const result = await pool.query(
    'SELECT value, fence::text AS fence FROM fenced_values WHERE key = $1',
    [key],
  );
  return result.rows[0] ?? null;
}

/** Resolves once the kernel shows the process stopped (a signal is delivered async). */
async function stopped(pid: number): Promise<void> {
  for (let attempt = 0; attempt < 1_000 && processState(pid) !== 'T'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  expect(processState(pid)).toBe('T');
}

/** The state letter of a process (T: stopped) from /proc. */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe('fenced PostgreSQL: the GC-pause story', () => {
  it('refuses the write of a holder frozen past its TTL; the row keeps the next holder’s value', async (context) => {
    onTestFailed(() => {
      for (const each of writers) console.error(`writer ${each.name} stderr:\n${each.stderrText}`);
    });
    const started = await startPostgres();
    if ('skipped' in started) {
      console.warn(`skipped: ${started.skipped}`);
      context.skip(started.skipped);
      return;
    }
    postgres = started;
    db = new pg.Pool({ connectionString: started.url, max: 1 });
    cluster = await ProcessCluster.create(3);
    cluster.startAll();
    await cluster.waitForLeader(STEP_TIMEOUT_MS);
    const endpoints = cluster.nodes.map((node) => node.clientAddress).join(',');

    // 1. A holds the lock and writes.
    const a = writer('A', A_TTL_MS, endpoints, started.url);
    const aAcquired = await a.next(STEP_TIMEOUT_MS);
    expect(aAcquired).toMatchObject({ event: 'acquired' });
    const aToken = String(aAcquired.token);
    a.send('check');
    expect(await a.next(STEP_TIMEOUT_MS)).toEqual({ event: 'checked', alive: true });
    a.send('write from A');
    expect(await a.next(STEP_TIMEOUT_MS)).toEqual({
      event: 'written',
      value: 'from A',
      token: aToken,
    });
    expect(await readRow(db, KEY)).toEqual({ value: 'from A', fence: aToken });

    // 2. A checks its lease once more (good), and freezes before its next write.
    a.send('check');
    expect(await a.next(STEP_TIMEOUT_MS)).toEqual({ event: 'checked', alive: true });
    a.signal('SIGSTOP');
    const frozenAtMs = performance.now();
    await stopped(a.child.pid ?? 0);

    // 3. A's lease ends while it is frozen; B gets the lock with a later token, writes.
    const b = writer('B', 10_000, endpoints, started.url);
    const bAcquired = await b.next(STEP_TIMEOUT_MS);
    const grantedToBAtMs = performance.now();
    expect(bAcquired).toMatchObject({ event: 'acquired' });
    const bToken = String(bAcquired.token);
    expect(BigInt(bToken)).toBeGreaterThan(BigInt(aToken));
    expect(processState(a.child.pid ?? 0)).toBe('T');
    b.send('write from B');
    expect(await b.next(STEP_TIMEOUT_MS)).toEqual({
      event: 'written',
      value: 'from B',
      token: bToken,
    });
    expect(await readRow(db, KEY)).toEqual({ value: 'from B', fence: bToken });

    // 4. A resumes and makes the write its check allowed: refused, B's token is there.
    a.send('write late from A');
    a.signal('SIGCONT');
    expect(await a.next(STEP_TIMEOUT_MS)).toEqual({
      event: 'refused',
      value: 'late from A',
      token: aToken,
      fence: bToken,
    });
    const refusedAtMs = performance.now();
    expect(await readRow(db, KEY)).toEqual({ value: 'from B', fence: bToken });
    // By now A's client knows its lease is gone.
    a.send('check');
    expect(await a.next(STEP_TIMEOUT_MS)).toEqual({ event: 'checked', alive: false });

    // 5. B still writes under its grant; both end cleanly.
    b.send('write again from B');
    expect(await b.next(STEP_TIMEOUT_MS)).toMatchObject({ event: 'written' });
    expect(await readRow(db, KEY)).toEqual({ value: 'again from B', fence: bToken });
    a.send('exit');
    b.send('exit');
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);

    console.log(
      `fenced-postgres: A's TTL ${A_TTL_MS} ms; after A froze, B was granted at +${Math.round(grantedToBAtMs - frozenAtMs)} ms, ` +
        `A's stale write (token ${aToken} < ${bToken}) refused at +${Math.round(refusedAtMs - frozenAtMs)} ms`,
    );
  });
});
