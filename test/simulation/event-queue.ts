/**
 * A binary min-heap of timed events. Ties in time are broken by insertion order, so
 * that a run depends only on its seed.
 */
export class EventQueue<T> {
  private readonly heap: { time: number; sequence: number; item: T }[] = [];
  private sequence = 0;

  get size(): number {
    return this.heap.length;
  }

  push(time: number, item: T): void {
    this.heap.push({ time, sequence: this.sequence++, item });
    let child = this.heap.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.less(child, parent)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  pop(): { time: number; item: T } | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (top === undefined || last === undefined) return undefined;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.sinkFromRoot();
    }
    return { time: top.time, item: top.item };
  }

  private sinkFromRoot(): void {
    let parent = 0;
    for (;;) {
      const left = parent * 2 + 1;
      const right = left + 1;
      let smallest = parent;
      if (left < this.heap.length && this.less(left, smallest)) smallest = left;
      if (right < this.heap.length && this.less(right, smallest)) smallest = right;
      if (smallest === parent) return;
      this.swap(parent, smallest);
      parent = smallest;
    }
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a];
    const y = this.heap[b];
    if (x === undefined || y === undefined) return false;
    return x.time < y.time || (x.time === y.time && x.sequence < y.sequence);
  }

  private swap(a: number, b: number): void {
    const x = this.heap[a];
    const y = this.heap[b];
    if (x === undefined || y === undefined) return;
    this.heap[a] = y;
    this.heap[b] = x;
  }
}
