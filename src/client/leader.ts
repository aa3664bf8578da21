import * as grpc from '@grpc/grpc-js';
import type { Connection } from './connection.ts';
import { DlmClientError } from './errors.ts';

/** Who leads an election (message LeaderInfo). Ids and tokens are uint64 decimal strings. */
export interface Leader {
  readonly sessionId: string;
  readonly owner: string;
  readonly value: string;
  /** The term's fencing token: higher for every new leader. */
  readonly token: string;
  /** How long it has led, as the answering node measured it (a lower bound). */
  readonly heldMs: number;
}

/**
 * One message of client.observe(): `current` first (the leadership as it stands, also
 * after the stream was opened again), then `elected` (a new term), `proclaimed` (the
 * same leader's new value) or `vacant` (nobody leads).
 */
export interface LeaderChange {
  readonly type: 'current' | 'elected' | 'proclaimed' | 'vacant';
  readonly election: string;
  /** Null when nobody leads. */
  readonly leader: Leader | null;
  /** The log index of the entry that made the change (the applied index for `current`). */
  readonly index: string;
}

/** A LeaderInfo as the loader decodes it; null (or absent) when the field is unset. */
export function leaderFromWire(wire: unknown): Leader | null {
  if (typeof wire !== 'object' || wire === null) return null;
  const fields = wire as Record<string, unknown>;
  return {
    sessionId: String(fields.session_id),
    owner: String(fields.owner ?? ''),
    value: String(fields.value ?? ''),
    token: String(fields.fencing_token),
    heldMs: Number(fields.held_ms ?? 0),
  };
}

const TYPES: Readonly<Record<string, LeaderChange['type']>> = {
  CURRENT: 'current',
  ELECTED: 'elected',
  PROCLAIMED: 'proclaimed',
  VACANT: 'vacant',
};

export interface ObserveOptions {
  /** Ends the iteration (it then returns, it does not throw). */
  readonly signal?: AbortSignal;
}

/**
 * Failures after which the stream is opened again, at the next node for those a node
 * may have alone: the node went away or has no leader (UNAVAILABLE), installed a
 * snapshot (ABORTED: events were not seen one by one), the client fell behind
 * (RESOURCE_EXHAUSTED), or the stream broke. Its first message (`current`) says where
 * things stand then, so nothing is lost but the intermediate changes. Others (the
 * request is wrong, the caller may not read the election, kindMismatch) end it.
 */
const REOPENED: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.ABORTED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.CANCELLED,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
]);

/** See DlmClient.observe. */
export async function* observeLeader(
  connection: Connection,
  election: string,
  options: ObserveOptions = {},
): AsyncGenerator<LeaderChange, void, undefined> {
  const { signal } = options;
  // A function, not a narrowed field: the signal may fire while the stream is read.
  const ended = (): boolean => connection.isClosed || signal?.aborted === true;
  // The highest index yielded. A node opened after a break may lag the one before (its
  // `current` read from its own applied state): what it says of an earlier index is
  // skipped, so the iteration never goes back in time (review rev-api-election).
  let seenIndex = -1n;
  for (let attempt = 0; !ended(); ) {
    const address = connection.preferredAddress;
    const stream = connection.stream('Lock', 'Observe', { election });
    const stop = (): void => stream.cancel();
    signal?.addEventListener('abort', stop, { once: true });
    try {
      for await (const message of stream as AsyncIterable<Record<string, unknown>>) {
        attempt = 0;
        const change = changeFromWire(message);
        const index = BigInt(change.index);
        // A `current` carries the node's applied index, which may be a change's own: a
        // change at the index of a `current` already yielded is the one it showed.
        if (index < seenIndex || (change.type !== 'current' && index === seenIndex)) continue;
        seenIndex = index;
        yield change;
      }
      return;
    } catch (error) {
      if (ended()) return;
      const failure = DlmClientError.from(error, `Lock.Observe at ${address}`);
      if (!REOPENED.has(failure.status)) throw failure;
      if (failure.status === grpc.status.UNAVAILABLE || failure.errorCode === null) {
        connection.streamFailedAt(address);
      }
      await pause(connection.retryDelayMs(attempt, failure.retryAfterMs), signal);
      attempt++;
    } finally {
      signal?.removeEventListener('abort', stop);
      stream.cancel();
    }
  }
}

function changeFromWire(message: Record<string, unknown>): LeaderChange {
  const type = TYPES[String(message.type)];
  if (type === undefined) {
    throw new Error(`Lock.Observe sent an event of unknown type ${String(message.type)}`);
  }
  return {
    type,
    election: String(message.election),
    leader: message.has_leader === true ? leaderFromWire(message.leader) : null,
    index: String(message.index),
  };
}

function pause(delayMs: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, delayMs);
    signal?.addEventListener('abort', done, { once: true });
  });
}
