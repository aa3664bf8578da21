/**
 * Calls `log` for the first event of a key, then at most once per interval, passing how
 * many events of that key it skipped since the last call.
 */
export function rateLimitedPerKey(
  intervalMs: number,
): (key: string, log: (suppressed: number) => void) => void {
  const last = new Map<string, { atMs: number; suppressed: number }>();
  return (key, log) => {
    const nowMs = performance.now();
    const seen = last.get(key);
    if (seen !== undefined && nowMs - seen.atMs < intervalMs) {
      seen.suppressed++;
      return;
    }
    // Keys (senders and what they did) are few, but bounded all the same: a hostile
    // client picks its own address and claimed id.
    if (seen === undefined && last.size >= RATE_LIMITED_KEYS_MAX) last.clear();
    log(seen?.suppressed ?? 0);
    last.set(key, { atMs: nowMs, suppressed: 0 });
  };
}

const RATE_LIMITED_KEYS_MAX = 1_024;
