/**
 * Review of b994481: the kept eviction iterator holds on to every table V8's Map leaves
 * behind when it rehashes, for as long as the iterator is not advanced, that is for as
 * long as nothing is evicted. V8 moves an iterator to the Map's current table only when
 * it is next asked (OrderedHashTable's obsolete tables point to their successors, and the
 * iterator still points to the first); the parent asked a new iterator each eviction, so
 * nothing held the old tables.
 *
 * When nothing is evicted while keys come and go: a window below dedupeWindowMax (a
 * fresh node, a restored one, one whose window was raised) whose remembered results are
 * removed by Withdraws, a waiting Acquire whose deadline passed or call was cancelled
 * (docs/api.md: "the node withdraws the wait"), which deletes its remembered Queued.
 * Here: one holder, one waiter whose wait is queued and withdrawn again and again, the
 * window at the default 100,000 never full. Heap after GC must stay flat; at b994481 it
 * grows with every cycle, without bound (10 MB here; fixed after it: the iterator is
 * made at the first eviction and dropped by a delete).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import {
  extractLockSources,
  importLockStateMachine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const dir = extractLockSources('b994481^', 'dlm-dcr-parent-');
const CYCLES = Number(process.env.DLM_DCR_CYCLES ?? 200_000);

// biome-ignore lint/suspicious/noExplicitAny: two builds of one class
function heapGrowth(Machine: new (limits: object) => any): { mb: number; size: number } {
  const sm = new Machine({});
  let index = 0;
  const apply = (command: object) => sm.apply(++index, command, `p${index}`);
  const open = (requestId: string) =>
    apply({ type: 'OpenSession', ttlMs: 60_000, clientName: 'c', requestId }).result.sessionId;
  const holder = open('o1');
  const waiter = open('o2');
  const acquire = { lock: 'L', mode: 'exclusive', owner: 'o', maxHoldMs: 0, lockDelayMs: 0 };
  apply({ type: 'Acquire', ...acquire, sessionId: holder, waitMs: 0, requestId: 'held' });
  const cycle = (n: number) => {
    const requestId = `w${n}`;
    const queued = apply({
      type: 'Acquire',
      ...acquire,
      sessionId: waiter,
      waitMs: 60_000,
      requestId,
    });
    if (queued.result.type !== 'Queued') throw new Error(JSON.stringify(queued.result));
    const attemptIndex = index;
    const withdrawn = apply({
      type: 'Withdraw',
      lock: 'L',
      sessionId: waiter,
      requestId,
      attemptIndex,
    });
    if (withdrawn.result.type !== 'Withdrawn') throw new Error(JSON.stringify(withdrawn.result));
  };
  let n = 0;
  for (; n < 20_000; n++) cycle(n);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (; n < 20_000 + CYCLES; n++) cycle(n);
  gc();
  const after = process.memoryUsage().heapUsed;
  sm.checkInvariants();
  return { mb: (after - before) / 1e6, size: sm.rememberedCount };
}

describe.skipIf(dir === null)('b994481 review: tables retained by the kept iterator', () => {
  let Parent: MachineClass;
  beforeAll(async () => {
    Parent = await importLockStateMachine(dir as string);
  });

  it(`heap stays flat over ${CYCLES} queue-then-withdraw cycles below a full window`, () => {
    const parent = heapGrowth(Parent);
    const ours = heapGrowth(LockStateMachine);
    console.log(
      `heap growth after GC: parent ${parent.mb.toFixed(1)} MB (window ${parent.size}), this checkout ${ours.mb.toFixed(1)} MB (window ${ours.size})`,
    );
    expect(parent.mb).toBeLessThan(5);
    expect(ours.mb).toBeLessThan(5);
  });
});
