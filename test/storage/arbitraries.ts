import fc from 'fast-check';
import type { ConfigChange, Entry, HardState, Snapshot } from '../../src/raft/types.ts';
import type { CompactionPoint } from '../../src/storage/codec.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';

export const indexArb = fc.maxSafeNat().map(logIndex);
export const termArb = fc.maxSafeNat().map(term);
export const nodeIdArb = fc.string({ minLength: 1, maxLength: 12 }).map(nodeId);
const dataArb = fc.uint8Array({ maxLength: 64 });

const changeArb: fc.Arbitrary<ConfigChange> = fc.record({
  type: fc.constantFrom('addLearner', 'promoteLearner', 'removeNode'),
  nodeId: nodeIdArb,
});

export const entryArb: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({ kind: fc.constant('noop'), index: indexArb, term: termArb }),
  fc.record({ kind: fc.constant('normal'), index: indexArb, term: termArb, data: dataArb }),
  fc.record({ kind: fc.constant('config'), index: indexArb, term: termArb, change: changeArb }),
);

export const hardStateArb: fc.Arbitrary<HardState> = fc.record({
  term: termArb,
  votedFor: fc.option(nodeIdArb, { nil: null }),
  commitIndex: indexArb,
});

export const snapshotArb: fc.Arbitrary<Snapshot> = fc.record({
  metadata: fc.record({
    index: indexArb,
    term: termArb,
    config: fc.record({
      voters: fc.array(nodeIdArb, { maxLength: 5 }),
      learners: fc.array(nodeIdArb, { maxLength: 3 }),
    }),
  }),
  data: fc.uint8Array({ maxLength: 256 }),
});

export const compactionPointArb: fc.Arbitrary<CompactionPoint> = fc.record({
  index: indexArb,
  term: termArb,
});
