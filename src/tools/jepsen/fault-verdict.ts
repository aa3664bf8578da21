import type { Violation } from './checker.ts';
import type { CheckerVerdict } from './summary.ts';

/**
 * The verdict of a nemesis that checks what it did itself (disk full, corrupt record,
 * membership, client worker), beside the history's checkers: invalid if it found any
 * violation, unknown if the fault never ran to the point where it could check, valid
 * otherwise. `checks` names its violations' check, so the summary lists them once.
 */
export function faultVerdict(fault: {
  readonly name: string;
  readonly check: Violation['check'];
  readonly violations: readonly Violation[];
  readonly stats: Readonly<Record<string, number | string>>;
  /** Why nothing could be checked (the fault never ran, or never got far enough), or null. */
  readonly unknownBecause: string | null;
  readonly note: string;
}): CheckerVerdict {
  const { name, violations, stats, note } = fault;
  const checks = [fault.check];
  if (violations.length > 0) {
    return { name, valid: false, checks, details: { note, stats, anomalies: violations } };
  }
  if (fault.unknownBecause !== null) {
    return { name, valid: 'unknown', checks, details: { note: fault.unknownBecause, stats } };
  }
  return { name, valid: true, checks, details: { note, stats } };
}
