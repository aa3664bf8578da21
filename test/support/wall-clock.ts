/**
 * Steps this process's wall clock (Date.now() and `new Date()`) by `offsetMs`, as an
 * NTP step or an operator's `date -s` would: it keeps advancing at the real rate from
 * the new value. Timers and performance.now() are untouched, as they are by a real
 * step. Returns a function that puts the real clock back.
 */
export function stepWallClock(offsetMs: number): () => void {
  const RealDate = Date;
  class SteppedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offsetMs);
      else super(...(args as [string | number | Date]));
    }

    static override now(): number {
      return RealDate.now() + offsetMs;
    }
  }
  globalThis.Date = SteppedDate as DateConstructor;
  return () => {
    globalThis.Date = RealDate;
  };
}
