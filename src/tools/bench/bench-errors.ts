/**
 * Failed calls during a cell, counted by message. Only the first few distinct
 * messages are kept, so a storm of one error cannot grow without bound.
 */
export interface BenchErrors {
  readonly count: number;
  readonly messages: Readonly<Record<string, number>>;
}

const DISTINCT_MESSAGES_MAX = 10;

export class ErrorTally {
  private count = 0;
  private readonly messages = new Map<string, number>();

  note(what: string, error: unknown): void {
    this.count++;
    const text = `${what}: ${error instanceof Error ? error.message : String(error)}`;
    const seen = this.messages.get(text);
    if (seen !== undefined) this.messages.set(text, seen + 1);
    else if (this.messages.size < DISTINCT_MESSAGES_MAX) this.messages.set(text, 1);
  }

  snapshot(): BenchErrors {
    return { count: this.count, messages: Object.fromEntries(this.messages) };
  }
}

export function mergeErrors(all: readonly BenchErrors[]): BenchErrors {
  const messages: Record<string, number> = {};
  for (const errors of all) {
    for (const [text, n] of Object.entries(errors.messages))
      messages[text] = (messages[text] ?? 0) + n;
  }
  return { count: all.reduce((sum, errors) => sum + errors.count, 0), messages };
}
