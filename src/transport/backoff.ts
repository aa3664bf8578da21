/**
 * The reconnect delay of one peer link: exponential with full jitter, starting over
 * once a connection lived longer than the longest delay (it was healthy, so its loss is
 * a new outage, not the next failure of the same one).
 */
export class ReconnectBackoff {
  private delayMs: number;
  private openedAtMs = 0;

  constructor(
    private readonly delayMsMin: number,
    private readonly delayMsMax: number,
  ) {
    this.delayMs = delayMsMin;
  }

  /** A connection was opened now. */
  opened(): void {
    this.openedAtMs = performance.now();
  }

  /** The connection broke: how long to wait before the next attempt. */
  nextDelayMs(): number {
    if (performance.now() - this.openedAtMs > this.delayMsMax) this.delayMs = this.delayMsMin;
    const delayMs = Math.random() * this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.delayMsMax);
    return delayMs;
  }
}
