/**
 * Which of a Jepsen run's nodes are members now, and which of them a fault holds.
 *
 * The membership nemesis adds and removes nodes while the other nemeses kill, freeze,
 * fill or corrupt them. They share this registry so that no two of them work on one
 * node at once: a node being removed must not be restarted by the kill nemesis (it
 * would come back on a directory the removal is about to wipe), and a node a fault
 * holds down must not be picked for removal (the removal would wait on it). Without
 * the membership nemesis the members are every node and nothing is ever in change.
 */
export class Members {
  private readonly current: string[];
  /** Nodes a fault or a membership change is working on. */
  private readonly held = new Set<string>();

  constructor(founders: readonly string[]) {
    this.current = [...founders];
  }

  /** The members, in the order they joined: whom the cluster is made of now. */
  ids(): readonly string[] {
    return [...this.current];
  }

  /** Members no fault or change is working on: what a new fault may pick. */
  free(): readonly string[] {
    return this.current.filter((id) => !this.held.has(id));
  }

  /**
   * Takes a member for a fault or a change; false if another already has it, or it is
   * no longer a member. A fault's pick can be seconds old (the run draws its node, then
   * waits): a node removed meanwhile is the membership nemesis's, which may be adding it
   * back empty right then.
   */
  hold(id: string): boolean {
    if (this.held.has(id) || !this.current.includes(id)) return false;
    this.held.add(id);
    return true;
  }

  letGo(id: string): void {
    this.held.delete(id);
  }

  /** Runs `work` holding `id`, or returns null at once if another holds it. */
  async holding<T>(id: string, work: () => Promise<T>): Promise<T | null> {
    if (!this.hold(id)) return null;
    try {
      return await work();
    } finally {
      this.letGo(id);
    }
  }

  added(id: string): void {
    if (!this.current.includes(id)) this.current.push(id);
  }

  removed(id: string): void {
    const at = this.current.indexOf(id);
    if (at >= 0) this.current.splice(at, 1);
  }
}
