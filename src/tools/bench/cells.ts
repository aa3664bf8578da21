/**
 * A cell is one measurement: `clients` clients, each with its own session, taking and
 * giving back locks in a loop. `hot`: all of them want one lock (a queue forms, and the
 * server hands it on); `distinct`: each has a lock of its own (no contention, pure
 * write throughput).
 */
export type Contention = 'hot' | 'distinct';

export interface CellSpec {
  readonly clients: number;
  readonly contention: Contention;
}

/** What one bench client does in a cell: its index and the lock it loops on. */
export interface ClientAssignment {
  readonly clientIndex: number;
  readonly lock: string;
}

export const DEFAULT_CELLS: readonly CellSpec[] = [1, 16, 64].flatMap((clients) => [
  { clients, contention: 'hot' as const },
  { clients, contention: 'distinct' as const },
]);

/** Upper bound on clients in one cell: each one is a session and a loop in a worker. */
export const CLIENTS_PER_CELL_MAX = 1_024;

export function cellName(cell: CellSpec): string {
  return `${cell.clients}x-${cell.contention}`;
}

/** Parses `16x-hot`; throws naming the text when it is not one. */
export function parseCell(text: string): CellSpec {
  const match = /^(\d+)x-(hot|distinct)$/.exec(text.trim());
  if (match === null) {
    throw new Error(`cell "${text}" is not CLIENTSx-hot or CLIENTSx-distinct (e.g. 16x-hot)`);
  }
  const clients = Number(match[1]);
  if (clients < 1 || clients > CLIENTS_PER_CELL_MAX) {
    throw new Error(`cell "${text}": clients must be in 1..${CLIENTS_PER_CELL_MAX}`);
  }
  return { clients, contention: match[2] as Contention };
}

/**
 * Lock names for a cell. `runTag` keeps cells apart on one cluster: a lock a cell's
 * last client released can then not be mistaken for the next cell's.
 */
export function assignLocks(cell: CellSpec, runTag: string): ClientAssignment[] {
  return Array.from({ length: cell.clients }, (_, clientIndex) => ({
    clientIndex,
    lock:
      cell.contention === 'hot' ? `bench/${runTag}/hot` : `bench/${runTag}/client-${clientIndex}`,
  }));
}

/** Deals clients to workers in turn, so a hot lock's queue mixes every worker's clients. */
export function dealToWorkers<T>(items: readonly T[], workers: number): T[][] {
  const hands: T[][] = Array.from({ length: workers }, () => []);
  for (const [i, item] of items.entries()) hands[i % workers]?.push(item);
  return hands;
}
