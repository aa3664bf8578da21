/**
 * The `limit` smallest of `names` in code-unit order, sorted: what a bounded listing
 * needs, without sorting (or even copying) every name. Keeps a sorted array of at most
 * `limit` names and inserts a name only when it sorts before the largest kept, so a
 * listing costs one comparison per name plus the inserts, instead of a full sort.
 */
export function smallestNames(names: Iterable<string>, limit: number): string[] {
  const kept: string[] = [];
  if (limit <= 0) return kept;
  for (const name of names) {
    const last = kept[kept.length - 1];
    if (kept.length >= limit && last !== undefined && name >= last) continue;
    kept.splice(insertionPoint(kept, name), 0, name);
    if (kept.length > limit) kept.pop();
  }
  return kept;
}

/** Where `name` goes in the ascending `sorted`: after every name that sorts before it. */
function insertionPoint(sorted: readonly string[], name: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((sorted[middle] as string) < name) low = middle + 1;
    else high = middle;
  }
  return low;
}
