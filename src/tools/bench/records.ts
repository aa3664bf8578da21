/**
 * What a bench client writes down for each acquire+release pair. Times are epoch
 * milliseconds with sub-millisecond precision (performance.timeOrigin + now()), so
 * records from different worker processes on one machine can be compared.
 */
export interface PairRecord {
  readonly clientIndex: number;
  readonly lock: string;
  /** The fencing token (dlm) or lock revision (etcd), as a decimal string. */
  readonly token: string;
  readonly acquireSentMs: number;
  readonly grantedMs: number;
  readonly releaseSentMs: number;
  readonly releasedMs: number;
}

/** Epoch milliseconds on the high-resolution clock; comparable across local processes. */
export function epochNowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Records grouped by lock, each group in the order its grants were received. */
export function byLockInGrantOrder(records: readonly PairRecord[]): Map<string, PairRecord[]> {
  const groups = new Map<string, PairRecord[]>();
  for (const record of records) {
    const group = groups.get(record.lock) ?? [];
    group.push(record);
    groups.set(record.lock, group);
  }
  for (const group of groups.values()) group.sort((a, b) => a.grantedMs - b.grantedMs);
  return groups;
}
