import { describe, expect, it } from 'vitest';
import { continueTrace, traceparentOf } from '../../src/node/trace.ts';

/** W3C Trace Context parsing: continue a valid traceparent, start afresh on anything else. */
describe('continueTrace', () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';

  it('continues a valid traceparent with a new span, keeping the sampled flag', () => {
    const trace = continueTrace(`00-${traceId}-${parent}-01`);
    expect(trace).toMatchObject({ traceId, parentSpanId: parent, sampled: true });
    expect(trace.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(trace.spanId).not.toBe(parent);
    expect(continueTrace(`00-${traceId}-${parent}-00`).sampled).toBe(false);
    expect(traceparentOf(trace)).toBe(`00-${traceId}-${trace.spanId}-01`);
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['upper case', `00-${traceId.toUpperCase()}-${parent}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${parent}-01`],
    ['all-zero parent', `00-${traceId}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${traceId}-${parent}-01`],
    ['short trace id', `00-${traceId.slice(2)}-${parent}-01`],
  ])('starts a new trace when the traceparent is %s', (_, value) => {
    const trace = continueTrace(value);
    expect(trace.parentSpanId).toBeNull();
    expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(trace.traceId).not.toBe(traceId);
  });

  it('draws fresh ids across refills of its random pool: well-formed, none repeated', () => {
    // 24 bytes a trace: 1,000 traces take the 4 KiB pool through several refills.
    const traces = Array.from({ length: 1_000 }, () => continueTrace(undefined));
    for (const trace of traces) {
      expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(trace.spanId).toMatch(/^[0-9a-f]{16}$/);
    }
    const ids = traces.flatMap((trace) => [trace.traceId, trace.spanId]);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
