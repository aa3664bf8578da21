import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import { ApiCluster, eventually, IDS } from './harness.ts';

/**
 * Observe at a node that knows no leader: cut off, it applies nothing, so a stream kept
 * open there would be silent about every change meanwhile (a LeadershipHandle would not
 * learn that its term ended). Such a node ends its Observe streams UNAVAILABLE and
 * refuses new ones, so the client reopens elsewhere.
 */
let cluster: ApiCluster | null = null;

afterEach(async () => {
  cluster?.network.heal();
  await cluster?.stop();
  cluster = null;
});

function streamEnd(stream: NodeJS.EventEmitter): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    stream.on('data', () => {});
    stream.on('error', resolve);
  });
}

describe('Observe at a node that knows no leader', () => {
  it('ends UNAVAILABLE once the node loses its leader, and refuses new streams until it has one', async () => {
    const started = await ApiCluster.start();
    cluster = started;
    await eventually(() =>
      [...started.nodes.values()].every(
        (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
      ),
    );
    const follower = await started.followerId();
    const open = started.at(follower).lock.stream('Observe', { election: 'obs/e' });
    const firstMessage = new Promise((resolve) => open.once('data', resolve));
    const ended = streamEnd(open);
    await firstMessage;

    started.network.isolate(
      follower,
      IDS.filter((id) => id !== follower),
    );
    const end = await ended;
    expect(end.code).toBe(status.UNAVAILABLE);
    expect(end.details).toContain(`${follower} knows no leader`);

    const refused = await streamEnd(
      started.at(follower).lock.stream('Observe', { election: 'obs/e' }),
    );
    expect(refused.code).toBe(status.UNAVAILABLE);

    // Back in touch with the leader, it serves Observe again.
    started.network.heal();
    await eventually(() => started.nodes.get(follower)?.status().leaderId !== null);
    const again = started.at(follower).lock.stream('Observe', { election: 'obs/e' });
    again.on('error', () => {});
    const current = await new Promise<Record<string, unknown>>((resolve) =>
      again.once('data', resolve),
    );
    expect(current.type).toBe('CURRENT');
    again.cancel();
  }, 30_000);
});
