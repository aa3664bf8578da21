import { expect } from 'vitest';
import { describeOp } from '../../src/tools/jepsen/history.ts';
import { REPLAYED_KINDS } from '../../src/tools/jepsen/log-answers.ts';
import { faultWindows, type JepsenResult } from '../../src/tools/jepsen/run.ts';
import type { CheckerVerdict } from '../../src/tools/jepsen/summary.ts';

/** What the nemesis tests share: a run must pass every checker and not be vacuous. */

/**
 * The run found nothing (linearizability decided too), it was not vacuous, and the log
 * replay reproduced every ok answer.
 */
export function expectCleanRun(result: JepsenResult): void {
  const found = result.violations.map(
    (v) =>
      `[${v.check}] ${v.message} ${v.ops.map((id) => describeOp(result.ops[id] ?? never(id))).join(' | ')}`,
  );
  if (found.length > 0) console.log(`history and logs kept in ${result.clusterDir}`);
  expect(found).toEqual([]);
  expect(result.log.answers.acquire.ok).toBeGreaterThan(20);
  // Every ok answer, the client worker's too, is reproduced by replaying the log.
  for (const kind of REPLAYED_KINDS) {
    const { ok, reproduced, beforeStart } = result.log.answers[kind];
    expect(reproduced + beforeStart, kind).toBe(ok);
  }
  expect(result.linearizability.verdict).toBe('ok');
}

/** The fault verdict whose name starts with `prefix`. */
export function faultVerdict(result: JepsenResult, prefix: string): CheckerVerdict {
  const verdict = result.faultVerdicts.find((v) => v.name.startsWith(prefix));
  expect(verdict, `a verdict named ${prefix}…`).toBeDefined();
  return verdict as CheckerVerdict;
}

export function statOf(verdict: CheckerVerdict, name: string): number {
  return Number(verdict.details.stats?.[name]);
}

/** Grants acknowledged while a fault of `kind` was on: the others went on serving. */
export function grantsDuring(result: JepsenResult, kind: string): number {
  const windows = faultWindows(result.nemesisEvents, result.endMs).filter((w) => w.kind === kind);
  return result.ops.filter(
    (op) =>
      op.kind === 'acquire' &&
      op.outcome === 'ok' &&
      windows.some((w) => (op.completeMs as number) >= w.from && (op.completeMs as number) < w.to),
  ).length;
}

export function countEvents(result: JepsenResult, kind: string): number {
  return result.nemesisEvents.filter((event) => event.kind === kind).length;
}

function never(id: number): never {
  throw new Error(`no op ${id}`);
}
