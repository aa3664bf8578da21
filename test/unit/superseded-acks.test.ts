import { describe, expect, it } from 'vitest';
import { withoutSupersededAcks } from '../../src/node/superseded-acks.ts';
import type { Message } from '../../src/raft/index.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';

function ack(to: string, match: number, termNumber = 2, success = true): Message {
  return {
    type: 'AppendEntriesResponse',
    from: nodeId('n2'),
    to: nodeId(to),
    term: term(termNumber),
    success,
    matchIndex: logIndex(success ? match : 0),
    rejectedIndex: logIndex(success ? 0 : match),
    hintIndex: logIndex(0),
    hintTerm: null,
  };
}

const heartbeatAnswer: Message = {
  type: 'HeartbeatResponse',
  from: nodeId('n2'),
  to: nodeId('n1'),
  term: term(2),
  readSequence: 3,
};

const matches = (messages: readonly Message[]) =>
  messages.map((m) =>
    m.type === 'AppendEntriesResponse'
      ? `${m.to}:${m.term}:${m.success ? 'ok' : 'no'}:${m.success ? m.matchIndex : m.rejectedIndex}`
      : m.type,
  );

describe('withoutSupersededAcks', () => {
  it('keeps only the last of successful acks to one leader in one term', () => {
    const out = withoutSupersededAcks([ack('n1', 5), ack('n1', 6), ack('n1', 8)]);
    expect(matches(out)).toEqual(['n1:2:ok:8']);
  });

  it('keeps an ack that a later, lower one does not cover', () => {
    const out = withoutSupersededAcks([ack('n1', 8), ack('n1', 3)]);
    expect(matches(out)).toEqual(['n1:2:ok:8', 'n1:2:ok:3']);
  });

  it('keeps rejections, other messages and their order', () => {
    const out = withoutSupersededAcks([
      ack('n1', 4),
      ack('n1', 7, 2, false),
      heartbeatAnswer,
      ack('n1', 5),
    ]);
    expect(matches(out)).toEqual(['n1:2:no:7', 'HeartbeatResponse', 'n1:2:ok:5']);
  });

  it('never lets an ack of one term or recipient stand for another', () => {
    const out = withoutSupersededAcks([ack('n1', 4, 2), ack('n3', 9, 2), ack('n1', 9, 3)]);
    expect(matches(out)).toEqual(['n1:2:ok:4', 'n3:2:ok:9', 'n1:3:ok:9']);
  });

  it('returns a list with nothing to drop as it is', () => {
    const list = [ack('n1', 4), heartbeatAnswer];
    expect(withoutSupersededAcks(list)).toBe(list);
  });
});
