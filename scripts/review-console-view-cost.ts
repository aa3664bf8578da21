// Review measurement (console merge): how long one console frame's nodeView + JSON takes
// on a node with many locks, i.e. how long the event loop is blocked per refresh per
// distinct watched prefix and per /console/view.json request. Prints; asserts nothing.
//   node --import tsx scripts/review-console-view-cost.ts [locks] [sessions]
import { LockStateMachine } from '../src/lock/index.ts';
import { ConsoleActivity } from '../src/node/console/activity.ts';
import { nodeView } from '../src/node/console/view.ts';
import type { NodeStatus } from '../src/node/node.ts';
import { logIndex, nodeId, sessionId } from '../src/util/ids.ts';

const locks = Number(process.argv[2] ?? 100_000);
const sessions = Number(process.argv[3] ?? 1_000);
const machine = new LockStateMachine({ locksMax: locks, sessionsMax: sessions });
let index = 1;
for (let s = 0; s < sessions; s++) {
  machine.apply(logIndex(index++), {
    type: 'OpenSession',
    ttlMs: 60_000,
    clientName: `c${s}`,
    requestId: `open-${s}`,
  });
}
for (let i = 0; i < locks; i++) {
  machine.apply(logIndex(index++), {
    type: 'Acquire',
    lock: `tenant-${i % 97}/jobs/${String(i).padStart(7, '0')}`,
    sessionId: sessionId((i % sessions) + 1),
    mode: 'exclusive',
    waitMs: 0,
    requestId: `a-${i}`,
    owner: 'worker-'.padEnd(64, 'x'),
    maxHoldMs: 0,
    lockDelayMs: 0,
  });
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
const times: number[] = [];
let bytes = 0;
for (let run = 0; run < 15; run++) {
  const started = performance.now();
  bytes = JSON.stringify(nodeView(node, activity, '', 200, 0)).length;
  times.push(performance.now() - started);
}
times.sort((a, b) => a - b);
console.log(
  `${locks} locks, ${sessions} sessions: one frame (prefix '') median ${times[7]?.toFixed(1)} ms, max ${times.at(-1)?.toFixed(1)} ms, ${bytes} bytes`,
);
