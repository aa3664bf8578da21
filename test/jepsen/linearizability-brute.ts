import {
  expiryBounds,
  INITIAL_LOCK_STATE,
  type LinOp,
  type LockState,
  type PartitionOp,
  returnMs,
  stepLock,
} from '../../src/tools/jepsen/linearizability/index.ts';

/**
 * The obvious checker, to hold the search to: try every order of the ops that respects
 * real time, stepping each lock's model, and say whether any order works. It shares the
 * model's step (what is being checked is the search, the cache, the split by lock and
 * the event order), and builds its own list of per-lock items: every acquire, release
 * and fence validation, and a copy of each close for every lock its session used (the
 * checker's reading of a close, see partition.ts); an acquire answered grantEnded is two
 * items, its grant and that grant's end, over the same interval.
 */
export function bruteForceLinearizable(history: readonly LinOp[], clockDriftMax: number): boolean {
  const bound = expiryBounds(history, { clockDriftMax, acquireRefreshesLease: false });
  const items = lockItems(history);
  const placed = new Array<boolean>(items.length).fill(false);
  const states = new Map<string, LockState>();

  const precededByUnplaced = (i: number): boolean => {
    const op = (items[i] as Item).op;
    return items.some((other, j) => !placed[j] && j !== i && returnMs(other.op) < op.invokeMs);
  };
  const search = (remaining: number): boolean => {
    if (remaining === 0) return true;
    for (let i = 0; i < items.length; i++) {
      if (placed[i] || precededByUnplaced(i)) continue;
      const item = items[i] as Item;
      const before = states.get(item.lock) ?? INITIAL_LOCK_STATE;
      const after = stepLock(before, item.op, bound);
      if (after === null) continue;
      placed[i] = true;
      states.set(item.lock, after);
      const found = search(remaining - 1);
      placed[i] = false;
      states.set(item.lock, before);
      if (found) return true;
    }
    return false;
  };
  return search(items.length);
}

interface Item {
  readonly lock: string;
  readonly op: PartitionOp;
}

function lockItems(history: readonly LinOp[]): Item[] {
  const items: Item[] = [];
  const locksOf = new Map<string, Set<string>>();
  for (const op of history) {
    if (op.type === 'validateFence') items.push({ lock: op.lock, op });
    if (op.type !== 'acquire' && op.type !== 'release') continue;
    items.push({ lock: op.lock, op });
    if (op.type === 'acquire' && op.failCode === 'grantEnded') {
      const { id, client, session, invokeMs, completeMs, outcome, lock } = op;
      const end = { id, client, session, invokeMs, completeMs, outcome, lock };
      items.push({ lock: op.lock, op: { ...end, type: 'grantEnd' } });
    }
    const locks = locksOf.get(op.session) ?? new Set<string>();
    locks.add(op.lock);
    locksOf.set(op.session, locks);
  }
  for (const op of history) {
    if (op.type !== 'closeSession') continue;
    for (const lock of locksOf.get(op.session) ?? []) items.push({ lock, op });
  }
  return items;
}
