import type { LinOp } from '../../src/tools/jepsen/linearizability/index.ts';
import { Prng } from '../../src/util/prng.ts';

/**
 * Histories shaped like one lock of the long Jepsen run (scripts/jepsen.ts): a few
 * clients, each in turn opening a session, acquiring with a 1 s wait, holding a little,
 * releasing, keeping its lease alive; a wait that finds the lock held ends in a refusal
 * a second later; an acquire now and then never answers (it may or may not have been
 * granted), and its client then closes the session and opens another. Sequentially
 * correct by construction: every op takes effect at one instant of a simulated lock,
 * and its call and answer are placed around that instant.
 *
 * It is this shape that made the search run out of budget on a real violation: every
 * unanswered acquire stays open to the end of the history, and every 1 s refusal
 * overlaps many others, so a search that must rule out every configuration up to the
 * violation has many to rule out.
 */
export interface JepsenShape {
  readonly seed: number;
  readonly clients: number;
  /** Ops of the lock history to produce (about). */
  readonly ops: number;
  /** Chance that an acquire goes unanswered. */
  readonly unansweredChance: number;
  /** Where to plant a grant whose token does not rise (a fraction of the ops), if any. */
  readonly plantTokenBackAt?: number;
}

const TTL_MS = 3_000;
const WAIT_MS = 1_000;
const KEEPALIVE_EVERY_MS = 1_000;

interface Client {
  readonly name: string;
  session: string | null;
  lastRefreshMs: number;
  nextAtMs: number;
  /** Previous answer: the client's next call starts after it. */
  busyUntilMs: number;
  holding: number | null;
  /** An acquire went unanswered: close the session next. */
  abandon: boolean;
}

export function jepsenShapedHistory(shape: JepsenShape): LinOp[] {
  const prng = new Prng(shape.seed);
  const ops: LinOp[] = [];
  let holder: { session: string } | null = null;
  let token = 0;
  let sessions = 0;
  let planted = false;
  const clients: Client[] = Array.from({ length: shape.clients }, (_, i) => ({
    name: `c${i}`,
    session: null,
    lastRefreshMs: 0,
    nextAtMs: i * 7,
    busyUntilMs: 0,
    holding: null,
    abandon: false,
  }));

  /** Records an op that took effect at `atMs`, called and answered around it. */
  const record = (
    client: Client,
    atMs: number,
    body: Record<string, unknown>,
    answerAfterMs: number | null,
    answered: 'ok' | 'fail' = 'ok',
  ): void => {
    const invokeMs = Math.max(client.busyUntilMs, atMs - prng.intBetween(0, 40));
    const completeMs = answerAfterMs === null ? null : atMs + answerAfterMs;
    ops.push({
      id: ops.length,
      client: client.name,
      invokeMs,
      completeMs,
      outcome: completeMs === null ? 'info' : answered,
      ...body,
    } as LinOp);
    client.busyUntilMs = completeMs ?? atMs;
    client.nextAtMs = (completeMs ?? atMs) + prng.intBetween(1, 60);
  };

  while (ops.length < shape.ops) {
    const client = clients.reduce((a, b) => (b.nextAtMs < a.nextAtMs ? b : a));
    const atMs = client.nextAtMs + 1;
    if (client.session === null) {
      client.session = String(++sessions);
      client.lastRefreshMs = atMs;
      record(client, atMs, { type: 'openSession', session: client.session, ttlMs: TTL_MS }, 5);
      continue;
    }
    const session = client.session;
    if (client.abandon) {
      if (holder?.session === session) holder = null;
      record(client, atMs, { type: 'closeSession', session }, prng.intBetween(5, 60));
      client.session = null;
      client.abandon = false;
      client.holding = null;
      continue;
    }
    if (atMs - client.lastRefreshMs >= KEEPALIVE_EVERY_MS) {
      client.lastRefreshMs = atMs;
      record(client, atMs, { type: 'keepAlive', session }, prng.intBetween(2, 30));
      continue;
    }
    if (client.holding !== null) {
      holder = null;
      const body = { type: 'release', session, lock: 'L', token: client.holding };
      record(client, atMs, body, prng.intBetween(5, 40));
      client.holding = null;
      continue;
    }
    if (!planted && shape.plantTokenBackAt !== undefined) {
      if (ops.length >= shape.ops * shape.plantTokenBackAt && holder === null) {
        // A fresh session granted token 1 again, long after grants above it were
        // answered: no order explains it.
        planted = true;
        const body = { type: 'acquire', session: 'planted', lock: 'L', mode: 'exclusive' };
        record(client, atMs, { ...body, token: 1 }, 10);
        continue;
      }
    }
    const acquire = { type: 'acquire', session, lock: 'L', mode: 'exclusive' };
    if (holder !== null) {
      // The wait ran out with the lock held all along.
      const waitedMs = WAIT_MS + prng.intBetween(0, 50);
      record(client, atMs, { ...acquire, failCode: 'busy' }, waitedMs, 'fail');
      continue;
    }
    token += prng.intBetween(1, 4);
    if (prng.chance(shape.unansweredChance)) {
      // Granted or not, nobody learns; the client gives the session up.
      if (prng.chance(0.5)) holder = { session };
      record(client, atMs, acquire, null);
      client.abandon = true;
      continue;
    }
    holder = { session };
    client.holding = token;
    record(client, atMs, { ...acquire, token }, prng.intBetween(5, 300));
  }
  return ops;
}
