/**
 * Assertions catch programmer errors, never operating errors. A failed assertion
 * means the process holds a state it was proven never to reach, and the only safe
 * response for a replica is to stop before it spreads that state.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Exhaustiveness check for discriminated unions: the compiler proves it unreachable. */
export function assertNever(value: never, what: string): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}
