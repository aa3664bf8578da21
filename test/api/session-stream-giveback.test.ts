import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { decodeEntry } from '../../src/node/entry-codec.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, sleep } from './harness.ts';

/**
 * A node gives back a grant whose answer never reached its caller (a Withdraw through
 * the log). That give-back may land late: after the client's settle released the grant
 * and a new Acquire of the same session was granted. It must leave the new grant alone.
 * (A probe of the stream-fix review that held, moved here.)
 */
let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const each of clients.splice(0)) each.close();
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

/** A write `from` forwards to the leader, carrying a command of `type`. */
function forwardOf(from: NodeId, type: string): (message: PeerMessage) => boolean {
  return (message) =>
    message.kind === 'forward' &&
    message.from === from &&
    decodeEntry(message.data).command.type === type;
}

function holders(c: ApiCluster, id: NodeId, lock: string): string[][] {
  const node = c.nodes.get(id) as DlmNode;
  return node.locks
    .describe(lock)
    .holders.map((each) => [String(each.sessionId), String(each.token)]);
}

describe('a give-back of an undelivered grant that lands late', () => {
  it('(stream) after the settle released the grant and a new Acquire was granted, leaves the new grant alone', async () => {
    const c = await ApiCluster.start();
    cluster = c;
    const follower = await c.followerId();
    const leader = await c.leaderId();
    const dlm = new DlmClient({ endpoints: [`127.0.0.1:${c.at(follower).server.port}`] });
    clients.push(dlm);
    const session = await dlm.openSession({ ttlMs: 60_000 });
    // The Acquire and the settle's re-ask both wait at the follower's door.
    c.network.hold(forwardOf(follower, 'Acquire'));
    const abort = new AbortController();
    const acquiring = session
      .acquire('giveback', { signal: abort.signal })
      .catch((error: unknown) => error);
    await eventually(() => c.network.heldCount === 1, 5_000);
    // The caller gives up: the node's call is cancelled while its write is in flight.
    abort.abort();
    expect(await acquiring).toMatchObject({ outcomeUnknown: true });
    await eventually(() => c.network.heldCount === 2, 5_000);
    // Both apply: the first grants, the re-ask is answered from it (same grant).
    c.network.releaseHeld();
    // The node gives back the first attempt, whose answer never went out: held back.
    c.network.hold(forwardOf(follower, 'Withdraw'));
    expect(await session.settled()).toMatchObject([{ lock: 'giveback', result: 'released' }]);
    await eventually(() => c.network.heldCount === 1, 5_000);
    // A new request of the same session takes the lock again.
    const handle = await session.acquire('giveback');
    // Now the stale give-back lands.
    c.network.releaseHeld();
    await sleep(500);
    expect(holders(c, leader, 'giveback')).toEqual([[session.id, handle.token]]);
    await handle.release();
    expect(holders(c, leader, 'giveback')).toEqual([]);
  }, 30_000);
});
