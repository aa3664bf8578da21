import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DlmRun, newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * The read commands of the CLI as a script runs them: bin/dlm as a child process against
 * a 3-node cluster of real `dlm serve` processes. Every read command's --json output is
 * parsed and its fields checked against state set up through the API; the human table's
 * header is checked too. `dlm revoke` ends a grant and the waiter behind it gets the
 * lock with a higher token. One cluster for the file; locks live under cli/.
 */
const BIN = fileURLToPath(new URL('../../bin/dlm', import.meta.url));

let cluster: ProcessCluster;
let holder: { session: number; token: number };
let sharer: number;
/** An Acquire of cli/a by a second session, waiting behind the holder until the revoke. */
let waiting: Promise<Record<string, unknown>>;
let waiterSession: number;

beforeAll(async () => {
  cluster = await ProcessCluster.create(3);
  cluster.startAll();
  await cluster.waitForLeader(15_000);
  holder = { session: await openSession('cli-holder'), token: 0 };
  holder.token = await acquire(holder.session, 'cli/a', 'EXCLUSIVE', 'owner-a');
  sharer = await openSession('cli-sharer');
  await acquire(sharer, 'cli/b', 'SHARED', 'owner-b');
  await acquire(holder.session, 'cli/b', 'SHARED', 'owner-a');
  waiterSession = await openSession('cli-waiter');
  // One call with a long deadline: callAny's attempts last 2 s each, and a wait whose
  // call ends is withdrawn until the retry queues it again, so a read in between would
  // see no waiter (CI failed on exactly that). callNode first connects the channel,
  // which grpc-js may otherwise fail fast with "No connection established".
  const waiterNode = cluster.nodes[0]?.id ?? 'n1';
  await cluster.callNode(waiterNode, 'Describe', { lock: 'cli/a' });
  waiting = cluster.call(
    waiterNode,
    'Acquire',
    {
      lock: 'cli/a',
      session_id: String(waiterSession),
      mode: 'EXCLUSIVE',
      wait_ms: 50_000,
      request_id: newRequestId(),
      owner: 'owner-w',
    },
    55_000,
  );
  // The waiter is queued once Describe shows it.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const described = await cluster.callAny('Describe', { lock: 'cli/a' });
    if ((described.waiters as unknown[]).length === 1) break;
    if (Date.now() > deadline) throw new Error('the waiter never queued');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

afterAll(async () => {
  await cluster.stopAll();
  cluster.remove();
});

async function openSession(clientName: string): Promise<number> {
  const opened = await cluster.callAny('OpenSession', {
    ttl_ms: 60_000,
    client_name: clientName,
    request_id: newRequestId(),
  });
  return Number(opened.session_id);
}

async function acquire(session: number, lock: string, mode: string, owner: string) {
  const answer = await cluster.acquireAny({
    lock,
    session_id: String(session),
    mode,
    wait_ms: 0,
    owner,
  });
  expect(answer.acquired).toBe(true);
  return Number(answer.fencing_token);
}

function dlm(...args: string[]): Promise<DlmRun> {
  return cluster.dlm([...args, '--config', cluster.configPath, '--timeout-ms', '20000']);
}

/** Runs a read command with --json; it must succeed with one JSON document on stdout. */
async function json(...args: string[]): Promise<Record<string, unknown>> {
  const run = await dlm(...args, '--json');
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

async function firstLine(...args: string[]): Promise<string> {
  const run = await dlm(...args);
  expect(run.code, run.stderr).toBe(0);
  return run.stdout.split('\n')[0] ?? '';
}

describe('the read commands of dlm on a live 3-node cluster', () => {
  it('status --json: every node, its role, the members; the table has its header', async () => {
    const status = await json('status');
    const nodes = status.nodes as Record<string, unknown>[];
    expect(nodes).toHaveLength(3);
    for (const node of nodes) {
      expect(node).toMatchObject({ reachable: true, node_id: expect.stringMatching(/^n[123]$/) });
      expect(node.term).toBeGreaterThan(0);
      expect(node.applied_index).toBeGreaterThan(0);
      expect(node.commit_index).toBeGreaterThanOrEqual(node.applied_index as number);
      expect(node.lock_rules_digest).toMatch(/^[0-9a-f]{12}$/);
      // No auth section: the node runs open, with no policy to digest.
      expect(node.policy_digest).toBe('');
    }
    expect(nodes.filter((node) => node.role === 'leader')).toHaveLength(1);
    expect(status.leader_id).toMatch(/^n[123]$/);
    expect(status.members).toEqual(
      cluster.nodes.map((node) => ({
        id: node.id,
        peer_address: node.peerAddress,
        client_address: node.clientAddress,
        learner: false,
      })),
    );
    expect(await firstLine('status')).toMatch(
      /^ADDRESS +NODE +ROLE +TERM +COMMIT +APPLIED +LEADER +RULES +POLICY +BEHAVIOUR$/,
    );
  });

  it('describe --json: holder with token and hold time, waiter in order', async () => {
    const state = await json('describe', 'cli/a');
    expect(state).toEqual({
      lock: 'cli/a',
      mode: 'EXCLUSIVE',
      holders: [
        {
          session_id: holder.session,
          owner: 'owner-a',
          fencing_token: holder.token,
          acquired_index: holder.token,
          held_ms: expect.any(Number),
        },
      ],
      waiters: [
        {
          session_id: waiterSession,
          owner: 'owner-w',
          mode: 'EXCLUSIVE',
          enqueued_index: expect.any(Number),
        },
      ],
    });
    // Granted in beforeAll, seconds ago: the node measured a hold time.
    expect((state.holders as Record<string, number>[])[0]?.held_ms).toBeGreaterThan(0);
    expect(await json('describe', 'cli/free')).toEqual({
      lock: 'cli/free',
      mode: null,
      holders: [],
      waiters: [],
    });
    const table = (await dlm('describe', 'cli/a')).stdout.split('\n');
    expect(table[0]).toBe('cli/a is held EXCLUSIVE by:');
    expect(table[1]).toMatch(/^ {2}OWNER +SESSION +TOKEN +HELD$/);
  });

  it('locks --json: the locks under a prefix with holders and waiters, paged by --limit and --after', async () => {
    const all = await json('locks', 'cli/');
    expect(all.truncated).toBe(false);
    expect(all.last).toBe('cli/b');
    const locks = all.locks as Record<string, unknown>[];
    expect(locks.map((lock) => lock.lock)).toEqual(['cli/a', 'cli/b']);
    expect(locks[0]).toMatchObject({
      mode: 'EXCLUSIVE',
      holders: [{ session_id: holder.session, fencing_token: holder.token, owner: 'owner-a' }],
      waiters: [{ session_id: waiterSession, mode: 'EXCLUSIVE' }],
    });
    expect(locks[1]).toMatchObject({ mode: 'SHARED', waiters: [] });
    const sharedHolders = (locks[1]?.holders ?? []) as Record<string, unknown>[];
    const shared = sharedHolders.map((each) => each.session_id);
    expect(shared.sort()).toEqual([holder.session, sharer].sort());
    for (const each of sharedHolders) {
      expect(each.held_ms).toBeGreaterThan(0);
    }

    const first = await json('locks', 'cli/', '--limit', '1');
    expect(first).toMatchObject({ truncated: true, last: 'cli/a' });
    const second = await json('locks', 'cli/', '--limit', '1', '--after', 'cli/a');
    expect(second).toMatchObject({ truncated: false, last: 'cli/b' });
    expect((second.locks as unknown[]).length).toBe(1);
    expect((await json('locks', 'none/')).locks).toEqual([]);
    expect(await firstLine('locks', 'cli/')).toMatch(
      /^LOCK +MODE +SESSION +OWNER +TOKEN +HELD +WAITERS$/,
    );
  });

  it('sessions --json: id, client name, TTL, time since refresh, locks held and waited for', async () => {
    const answer = await json('sessions');
    expect(answer.truncated).toBe(false);
    const sessions = answer.sessions as Record<string, unknown>[];
    const byId = new Map(sessions.map((each) => [each.session_id, each]));
    expect(byId.get(holder.session)).toEqual({
      session_id: holder.session,
      client_name: 'cli-holder',
      ttl_ms: 60_000,
      since_refresh_ms: expect.any(Number),
      last_refresh_index: expect.any(Number),
      held_locks: ['cli/a', 'cli/b'],
      held_count: 2,
      waiting_locks: [],
      waiting_count: 0,
    });
    expect(byId.get(waiterSession)).toMatchObject({
      client_name: 'cli-waiter',
      held_count: 0,
      waiting_locks: ['cli/a'],
    });
    const since = byId.get(holder.session)?.since_refresh_ms as number;
    // Opened in beforeAll and never refreshed since.
    expect(since).toBeGreaterThan(0);
    expect(since).toBeLessThan(60_000);
    const paged = await json('sessions', '--limit', '1');
    expect(paged).toMatchObject({ truncated: true, last_session_id: sessions[0]?.session_id });
    expect(await firstLine('sessions')).toMatch(/^SESSION +CLIENT +TTL +REFRESHED +HELD +WAITING$/);
  });

  it('rules --json: the rules in force and their digest', async () => {
    const rules = await json('rules');
    expect(rules).toMatchObject({ digest: expect.stringMatching(/^[0-9a-f]{12}$/) });
    expect((rules.rules as Record<string, number>).sessionTtlMsMax).toBe(300_000);
  });

  it('watch --json streams one JSON line per event; revoke ends the grant and the waiter gets a higher token', async () => {
    const watcher = spawnDlm(['watch', 'cli/', '--count', '3', '--json']);
    await watcher.live;
    const revoked = await json('revoke', 'cli/a', '--reason', 'test');
    expect(revoked).toMatchObject({ lock: 'cli/a', freed: 1 });
    const granted = await waiting;
    expect(granted.acquired).toBe(true);
    const newToken = Number(granted.fencing_token);
    expect(newToken).toBeGreaterThan(holder.token);
    const fence = await cluster.callAny('ValidateFence', {
      lock: 'cli/a',
      fencing_token: String(holder.token),
    });
    expect(fence.valid).toBe(false);
    // A third event: the sharer lets go of cli/b.
    const described = await json('describe', 'cli/b');
    const token = (described.holders as Record<string, number>[]).find(
      (each) => each.session_id === sharer,
    )?.fencing_token;
    await cluster.callAny('Release', {
      lock: 'cli/b',
      session_id: String(sharer),
      fencing_token: String(token),
      request_id: newRequestId(),
    });
    const { code, stdout } = await watcher.done;
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.map(({ type, lock, session_id }) => ({ type, lock, session_id }))).toEqual([
      { type: 'RELEASE', lock: 'cli/a', session_id: holder.session },
      { type: 'GRANT', lock: 'cli/a', session_id: waiterSession },
      { type: 'RELEASE', lock: 'cli/b', session_id: sharer },
    ]);
    expect(events[0]?.fencing_token).toBe(holder.token);
    expect(events[1]?.fencing_token).toBe(newToken);
    for (const event of events) expect(event.index).toBeGreaterThan(0);
    expect((await json('describe', 'cli/a')).holders).toMatchObject([
      { session_id: waiterSession, fencing_token: newToken },
    ]);
    const free = await json('revoke', 'cli/none');
    expect(free).toMatchObject({ freed: 0 });

    const table = spawnDlm(['watch', 'cli/', '--count', '1']);
    await table.live;
    await cluster.callAny('Release', {
      lock: 'cli/a',
      session_id: String(waiterSession),
      fencing_token: String(newToken),
      request_id: newRequestId(),
    });
    const human = await table.done;
    expect(human.code).toBe(0);
    const [header, line] = human.stdout.split('\n');
    expect(header).toMatch(/^INDEX +EVENT +SESSION +TOKEN +LOCK$/);
    expect(line).toMatch(new RegExp(`^\\d+ +RELEASE +${waiterSession} +${newToken} +cli/a$`));
  });

  it('dlm lock whose grant is revoked while CMD runs says so at the release and exits 69', async () => {
    const running = cluster.dlm([
      'lock',
      'cli/revoked',
      '--config',
      cluster.configPath,
      '--',
      process.execPath,
      '-e',
      'setTimeout(() => {}, 4000)',
    ]);
    const deadline = Date.now() + 15_000;
    while (((await json('describe', 'cli/revoked')).holders as unknown[]).length === 0) {
      if (Date.now() > deadline) throw new Error('dlm lock never held cli/revoked');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await json('revoke', 'cli/revoked')).toMatchObject({ freed: 1 });
    const run = await running;
    expect(run.stderr).toMatch(/the grant of cli\/revoked had ended before CMD finished/);
    expect(run.code).toBe(69);
  });

  it('a limit over runtime.listItemsMax is refused: the message names it and says what to do, exit 1', async () => {
    const run = await dlm('locks', '--limit', '5000', '--json');
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      'ListLocksRequest.limit: 5000 is over runtime.listItemsMax (1000)',
    );
    expect(run.stderr).toContain('what to do: fix the argument');
  });
});

/** A long-running dlm command: `live` once it reports it is watching, `done` at its exit. */
function spawnDlm(args: readonly string[]): {
  live: Promise<void>;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, [
    BIN,
    ...args,
    '--config',
    cluster.configPath,
    '--timeout-ms',
    '20000',
  ]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const live = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('watching ')) resolve();
    });
    child.once('exit', () => reject(new Error(`dlm ${args.join(' ')} exited early: ${stderr}`)));
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
  return { live, done };
}
