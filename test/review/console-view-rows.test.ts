import { describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { ConsoleActivity } from '../../src/node/console/activity.ts';
import { nodeView } from '../../src/node/console/view.ts';
import type { NodeStatus } from '../../src/node/node.ts';
import { logIndex, nodeId, sessionId } from '../../src/util/ids.ts';

/**
 * Review of the console merge: runtime.consoleRowsMax says "Locks and sessions the
 * console lists at most", and the lock table is cut to it, but each session row carries
 * `held` and `waiting` in full (LockStateMachine.session() sorts and copies every name).
 * One session holding many locks (locksMax is 100,000 by default, names up to 256 bytes)
 * puts every one of their names into every frame, re-sorted and re-serialized each
 * refresh for every watcher's prefix and every view.json request. A frame's size should
 * not grow with how many locks one session holds once past the row limit.
 */
const HELD = 3_000;
const ROWS_MAX = 10;

describe('review: console frame size', () => {
  it('a session holding many locks does not put every lock name into the frame', () => {
    const machine = new LockStateMachine();
    let index = 1;
    machine.apply(logIndex(index++), {
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'many-locks',
      requestId: 'open',
    });
    for (let i = 0; i < HELD; i++) {
      const output = machine.apply(logIndex(index++), {
        type: 'Acquire',
        lock: `jobs/${String(i).padStart(6, '0')}`,
        sessionId: sessionId(1),
        mode: 'exclusive',
        waitMs: 0,
        requestId: `acquire-${i}`,
        owner: 'worker',
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
      expect(output.result.type).toBe('Acquired');
    }
    const status: NodeStatus = {
      id: nodeId('n1'),
      role: 'leader',
      term: 1,
      leaderId: nodeId('n1'),
      commitIndex: index - 1,
      appliedIndex: index - 1,
      voters: [nodeId('n1')],
      learners: [],
    };
    const node = { id: nodeId('n1'), locks: machine, status: () => status };
    const activity = new ConsoleActivity({
      subscribe: () => () => {},
      observe: () => {},
      status: () => ({ commitIndex: 0 }),
    });
    const view = nodeView(node, activity, '', ROWS_MAX, 0);
    expect(view.locks.rows.length).toBe(ROWS_MAX);
    expect(view.locks.total).toBe(HELD);
    const namesInFrame = view.sessions.rows.reduce((sum, row) => sum + row.held.length, 0);
    expect(
      namesInFrame,
      `the session row lists ${namesInFrame} held locks (${JSON.stringify(view).length} bytes of frame) with consoleRowsMax ${ROWS_MAX}`,
    ).toBeLessThanOrEqual(ROWS_MAX);
  });
});
