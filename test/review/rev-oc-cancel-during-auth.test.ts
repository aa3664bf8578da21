/**
 * Review of 4c4507d, end paths of an event stream. With auth configured, streamAs runs
 * only after authenticate() resolves (scrypt: tens of ms). A client that cancels in that
 * window has had its 'cancelled'/'close' events before streamAs registers
 * `call.once('cancelled' | 'finish' | 'close', stop)`, and nothing checks call.cancelled:
 * stop() never runs. The call keeps its gate slot (clientCallsInFlightMax) and its
 * onEvery / onRestored / (new) onLeaderLost listeners for the node's life.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { ApiCluster, IDS, ServiceClient, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

describe('4c4507d: an Observe cancelled while its caller is authenticated', () => {
  it('gives back its gate slot (FAILED on 4c4507d: stop() never runs)', async () => {
    const tokens = [
      'reader-token-0123456789a',
      'reader-token-0123456789b',
      'reader-token-0123456789c',
    ];
    const section = {
      tokens: await Promise.all(tokens.map((t, k) => tokenEntry(`reader${k}`, t, 'scrypt'))),
      roles: { reader: [{ prefix: '', grant: ['read'] }] },
      identities: { reader0: ['reader'], reader1: ['reader'], reader2: ['reader'] },
    };
    const nodes = IDS.map((id, k) => ({
      id,
      peerAddress: `127.0.0.1:${7401 + k}`,
      clientAddress: `127.0.0.1:${8401 + k}`,
      metricsAddress: `127.0.0.1:${9401 + k}`,
    }));
    const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
    const started = await ApiCluster.start({}, {}, auth);
    cluster = started;
    const leader = await started.leaderId();
    const server = started.at(leader).server;
    const before = server.callsInFlight();
    for (const token of tokens) {
      const lock = new ServiceClient(LOCK_SERVICE_NAME, server.port, {
        interceptors: [bearerInterceptor(token)],
      });
      const stream = lock.stream('Observe', { election: 'oc/e' });
      stream.on('error', () => {});
      stream.on('data', () => {});
      await sleep(5); // the request is at the server, its scrypt check under way
      stream.cancel();
      await sleep(500);
      lock.raw.close();
    }
    await sleep(500);
    expect(server.callsInFlight()).toBe(before);
  }, 30_000);
});
