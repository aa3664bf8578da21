import type { LockLimits } from '../lock/index.ts';
import { type RuleDifference, ruleDifferences } from '../lock/optional-rules.ts';
import type { DlmNode } from './node.ts';

/**
 * A node's config only proposes lock rules; the ones in force come from the log (see
 * LockStateMachine.rules). This tells the operator when the two disagree, so that a
 * changed `lock` section that was never applied with `dlm rules apply` does not go
 * unnoticed, and the node follows the log all the same.
 */
export type LockRulesReport =
  /**
   * The log has set no rules yet: each node applies its own file's until a leader's
   * SetRules applies, and the leader takes no client write before that.
   */
  | { readonly kind: 'unset' }
  | { readonly kind: 'agree'; readonly setIndex: number }
  | {
      readonly kind: 'differ';
      readonly setIndex: number;
      /** `ours` is the config file's value, `theirs` the log's. */
      readonly differences: readonly RuleDifference[];
    };

type WatchedNode = Pick<DlmNode, 'locks' | 'subscribe' | 'onRestored'>;

export function compareLockRules(file: LockLimits, node: Pick<DlmNode, 'locks'>): LockRulesReport {
  const setIndex = node.locks.rulesSetIndex;
  if (setIndex === null) return { kind: 'unset' };
  const differences = ruleDifferences(file, node.locks.rules);
  return differences.length === 0
    ? { kind: 'agree', setIndex }
    : { kind: 'differ', setIndex, differences };
}

/**
 * Reports now (start-up: the rules of the node's snapshot), then each time the rules in
 * force change: a SetRules entry applies (catching up replays them in order) or a
 * snapshot from the leader brings others. Returns the unsubscribe.
 */
export function watchLockRules(
  node: WatchedNode,
  file: LockLimits,
  report: (report: LockRulesReport) => void,
): () => void {
  let lastSetIndex = node.locks.rulesSetIndex;
  report(compareLockRules(file, node));
  const changed = (): void => {
    if (node.locks.rulesSetIndex === lastSetIndex) return;
    lastSetIndex = node.locks.rulesSetIndex;
    report(compareLockRules(file, node));
  };
  const unsubscribe = node.subscribe((_index, output) => {
    if (output.result.type === 'RulesSet') changed();
  });
  const unrestored = node.onRestored(changed);
  return () => {
    unsubscribe();
    unrestored();
  };
}

/** One line naming each differing rule: `lock.lockDelayMs file 5000, log 0`. */
export function describeDifferences(differences: readonly RuleDifference[]): string {
  return differences
    .map(({ field, ours, theirs }) => `lock.${field} file ${ours}, log ${theirs}`)
    .join('; ');
}
