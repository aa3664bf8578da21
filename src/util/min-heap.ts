/**
 * A binary min-heap ordered by `(priority, sequence)`: among equal priorities, the item
 * pushed first comes out first, so the order is deterministic whatever the host.
 */
export class MinHeap<T> {
  private readonly items: { priority: number; sequence: number; value: T }[] = [];
  private pushed = 0;

  get size(): number {
    return this.items.length;
  }

  push(priority: number, value: T): void {
    this.items.push({ priority, sequence: this.pushed++, value });
    this.siftUp(this.items.length - 1);
  }

  /** The smallest priority, or undefined when empty. */
  peekPriority(): number | undefined {
    return this.items[0]?.priority;
  }

  pop(): T | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (top === undefined || last === undefined) return undefined;
    if (this.items.length > 0) {
      this.items[0] = last;
      this.siftDown(0);
    }
    return top.value;
  }

  clear(): void {
    this.items.length = 0;
  }

  private before(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    if (x === undefined || y === undefined) return false;
    return x.priority < y.priority || (x.priority === y.priority && x.sequence < y.sequence);
  }

  private swap(a: number, b: number): void {
    const x = this.items[a];
    const y = this.items[b];
    if (x === undefined || y === undefined) return;
    this.items[a] = y;
    this.items[b] = x;
  }

  private siftUp(index: number): void {
    let child = index;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.before(child, parent)) return;
      this.swap(child, parent);
      child = parent;
    }
  }

  private siftDown(index: number): void {
    let parent = index;
    for (;;) {
      const left = 2 * parent + 1;
      const right = left + 1;
      let smallest = parent;
      if (this.before(left, smallest)) smallest = left;
      if (this.before(right, smallest)) smallest = right;
      if (smallest === parent) return;
      this.swap(parent, smallest);
      parent = smallest;
    }
  }
}
