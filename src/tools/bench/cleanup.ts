/**
 * What a run must undo, newest first: stop workers, stop clusters, remove temp data.
 * Runs once, whether the run ends normally, fails or is interrupted.
 */
export class Cleanup {
  private readonly steps: { readonly what: string; readonly undo: () => Promise<void> | void }[] =
    [];
  private running: Promise<string[]> | null = null;

  add(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  /** Every step runs even if one fails; returns what failed, one line each. */
  run(): Promise<string[]> {
    this.running ??= this.runOnce();
    return this.running;
  }

  private async runOnce(): Promise<string[]> {
    const problems: string[] = [];
    for (const step of [...this.steps].reverse()) {
      try {
        await step.undo();
      } catch (error) {
        problems.push(`${step.what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return problems;
  }
}
