/**
 * What the web console's apply hook (ConsoleActivity.applied: one clock read per entry,
 * a look at its events) costs per applied entry, against an empty listener, in
 * alternating rounds after a warm-up. Prints ns per entry for both.
 *
 *   node --import tsx scripts/bench-console-activity.ts [--entries N] [--rounds R]
 */
import type { ApplyOutput } from '../src/lock/index.ts';
import { ConsoleActivity } from '../src/node/console/activity.ts';
import type { AppliedListener, NodeObserver } from '../src/node/node.ts';
import type { LogIndex } from '../src/util/ids.ts';

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const entries = arg('entries', 200_000);
const rounds = arg('rounds', 20);

let listener: AppliedListener = () => {};
const node = {
  subscribe: (next: AppliedListener) => {
    listener = next;
    return () => {};
  },
  observe: (_observer: NodeObserver) => {},
  status: () => ({ commitIndex: 0 }),
};
new ConsoleActivity(node);
const consoleListener = listener;
const empty: AppliedListener = () => {};

// A typical entry of a busy lock service: a grant (Acquire), or a release, or a keepalive.
const outputs: ApplyOutput[] = [
  {
    result: { ok: true } as never,
    events: [{ type: 'granted', lock: 'a', holder: {} as never, requestId: 'r', maxHoldMs: 0 }],
  },
  {
    result: { ok: true } as never,
    events: [
      { type: 'released', lock: 'a', sessionId: 1 as never, token: 2 as never, reason: 'release' },
    ],
  },
  {
    result: { ok: true } as never,
    events: [{ type: 'sessionRefreshed', sessionId: 1 as never, ttlMs: 10_000 }],
  },
];

function run(each: AppliedListener, start: number): number {
  const began = process.hrtime.bigint();
  for (let i = 0; i < entries; i++) each((start + i) as LogIndex, outputs[i % 3] as ApplyOutput);
  return Number(process.hrtime.bigint() - began) / entries;
}

let index = 1;
for (let i = 0; i < 3; i++) {
  run(consoleListener, index);
  index += entries;
  run(empty, index);
}
const console_: number[] = [];
const baseline: number[] = [];
for (let round = 0; round < rounds; round++) {
  console_.push(run(consoleListener, index));
  index += entries;
  baseline.push(run(empty, index));
  index += entries;
}
const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[values.length >> 1] ?? 0;
console.log(
  `per applied entry, median of ${rounds} alternating rounds of ${entries}: console hook ${median(console_).toFixed(1)} ns, empty listener ${median(baseline).toFixed(1)} ns`,
);
