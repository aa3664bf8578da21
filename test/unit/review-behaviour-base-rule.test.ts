/**
 * Review of the behaviour version (merge 6089958). Version 1 ("the rules of every release
 * before versions existed", docs/operations.md) applies a retold grant by the rule from
 * before 0dbc683. But 0dbc683 shipped ungated: main right before the merge (e32c50c, the
 * merge's first parent) and the "release before versions" the project's own rolling
 * upgrade test starts from (5df2042) both count the retry again, i.e. they apply version
 * 2's rule. So in a rolling upgrade from them, an upgraded node (at version 1 until every
 * member is upgraded) and a not-yet-upgraded node apply the same entries differently, and
 * an upgraded node replaying a log its predecessor wrote re-applies it by a rule it never
 * ran under: the grant its predecessor kept for a caller told "Acquired" is freed and
 * handed to another session.
 *
 * The older release's lock state machine is taken from git (needs `git`), as
 * test/cluster/behaviour-rolling-upgrade.test.ts takes its binary.
 */
import { execSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LockCommand, type LockResult, LockStateMachine } from '../../src/lock/index.ts';
import type { LogIndex, SessionId } from '../../src/util/ids.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The merge's first parent (main before versions), and the rolling-upgrade test's base. */
const OLD_COMMITS = ['e32c50c', '5df2042'];

interface Machine {
  apply(index: LogIndex, command: LockCommand): { result: LockResult };
}

let dir = '';
const oldMachines = new Map<string, new () => Machine>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dlm-review-beh-'));
  for (const commit of OLD_COMMITS) {
    const tree = join(dir, commit);
    execSync(
      `mkdir -p ${tree} && git -C ${JSON.stringify(ROOT)} archive ${commit} src | tar -x -C ${tree}`,
    );
    symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
    const module = (await import(join(tree, 'src', 'lock', 'index.ts'))) as {
      LockStateMachine: new () => Machine;
    };
    oldMachines.set(commit, module.LockStateMachine);
  }
}, 60_000);

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** Seed 304's steps (lock-retold-grant.test.ts), as a log: sessions 1 and 2 open first. */
function retoldLog(): LockCommand[] {
  const acquire = (sessionId: number, requestId: string): LockCommand => ({
    type: 'Acquire',
    lock: 'x',
    sessionId: sessionId as SessionId,
    mode: 'exclusive',
    waitMs: 0,
    requestId,
    owner: 'o',
    maxHoldMs: 0,
    lockDelayMs: 0,
  });
  const withdraw = (requestId: string, attemptIndex: number): LockCommand => ({
    type: 'Withdraw',
    lock: 'x',
    sessionId: 1 as SessionId,
    requestId,
    attemptIndex: attemptIndex as LogIndex,
  });
  const open = (requestId: string): LockCommand => ({
    type: 'OpenSession',
    ttlMs: 10_000,
    clientName: 'c',
    requestId,
  });
  return [
    open('open-a'), // 1: session 1
    open('open-b'), // 2: session 2
    acquire(1, 'first'), // 3: granted
    acquire(1, 'again'), // 4: told of the same grant
    withdraw('first', 3), // 5
    acquire(1, 'first'), // 6: the retry, told "Acquired" from memory
    withdraw('again', 4), // 7
    acquire(2, 'b'), // 8: session 2 tries the lock the caller of 6 was told it holds
  ];
}

function replay(machine: Machine): string[] {
  return retoldLog().map((command, position) => {
    const { result } = machine.apply((position + 1) as LogIndex, command);
    return result.type === 'Withdrawn' ||
      result.type === 'Acquired' ||
      result.type === 'NotAcquired'
      ? `${result.type}${'undid' in result ? `:${String(result.undid)}` : ''}`
      : result.type;
  });
}

describe('review: version 1 is not the rule of the release before versions', () => {
  for (const commit of OLD_COMMITS) {
    it(`an upgraded node at version 1 applies ${commit}'s log as ${commit} did`, () => {
      const Old = oldMachines.get(commit) as new () => Machine;
      const before = replay(new Old());
      // The release before versions kept the grant: session 2 is refused.
      expect(before.at(-1)).toBe('NotAcquired');
      const upgraded = new LockStateMachine();
      expect(upgraded.behaviour).toBe(1);
      // Same log, same index, same version in force everywhere: must be the same.
      expect(replay(upgraded)).toEqual(before);
    });
  }
});
