/**
 * A Map for what a lock's holders almost always are: one grant (exclusive, or a lone
 * shared one), sometimes a few shared ones. A Map costs some 280 bytes of heap even with
 * one entry (its hash table is allocated for several): at 100,000 held locks that was
 * 28 MB of each node's heap (heap snapshot, issue 12). One entry is kept in two fields;
 * a second entry makes a Map, and the Map is dropped again once one entry or none is left.
 * Keys are session ids, positive integers, which === compares as a Map does.
 *
 * It behaves as a Map does where the state machine relies on it: `set` of a present key
 * keeps its place, and iteration
 * is in insertion order (snapshots, descriptions and events list holders in it). With
 * one entry, its iterators are over the entry at the time of the call (no caller changes
 * a lock's holders while it iterates them).
 */
export class HolderMap<K extends number, V> {
  /** Undefined when there is no sole entry: keys are numbers, never undefined. */
  private soleKey: K | undefined = undefined;
  private soleValue: V | undefined = undefined;
  private many: Map<K, V> | null = null;

  /** No flag field for it: 8 bytes per held lock (heap snapshot, issue 12). */
  private get hasSole(): boolean {
    return this.soleKey !== undefined;
  }

  get size(): number {
    if (this.many !== null) return this.many.size;
    return this.hasSole ? 1 : 0;
  }

  get(key: K): V | undefined {
    if (this.many !== null) return this.many.get(key);
    return this.hasSole && this.soleKey === key ? this.soleValue : undefined;
  }

  has(key: K): boolean {
    if (this.many !== null) return this.many.has(key);
    return this.hasSole && this.soleKey === key;
  }

  set(key: K, value: V): this {
    if (this.many !== null) {
      this.many.set(key, value);
    } else if (!this.hasSole || this.soleKey === key) {
      this.soleKey = key;
      this.soleValue = value;
    } else {
      this.many = new Map([[this.soleKey as K, this.soleValue as V]]);
      this.many.set(key, value);
      this.clearSole();
    }
    return this;
  }

  delete(key: K): boolean {
    if (this.many === null) {
      if (!this.hasSole || this.soleKey !== key) return false;
      this.clearSole();
      return true;
    }
    const deleted = this.many.delete(key);
    if (this.many.size <= 1) this.collapse(this.many);
    return deleted;
  }

  keys(): IterableIterator<K> {
    if (this.many !== null) return this.many.keys();
    return (this.hasSole ? [this.soleKey as K] : []).values();
  }

  values(): IterableIterator<V> {
    if (this.many !== null) return this.many.values();
    return (this.hasSole ? [this.soleValue as V] : []).values();
  }

  /** Back to a field pair (or nothing) once a Map holds one entry or none. */
  private collapse(many: Map<K, V>): void {
    this.many = null;
    for (const [key, value] of many) {
      this.soleKey = key;
      this.soleValue = value;
    }
  }

  private clearSole(): void {
    this.soleKey = undefined;
    this.soleValue = undefined;
  }
}
