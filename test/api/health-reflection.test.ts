import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import type { NodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  eventually,
  IDS,
  type LogEntry,
  NODE_OPTIONS,
  type NodeEndpoints,
  rpcError,
  serve,
} from './harness.ts';

/**
 * grpc.health.v1.Health turns SERVING only once the node knows a leader and has caught
 * up; Cluster.Status answers even without a leader; reflection lists the services.
 */
describe('health, status without a leader, and reflection', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A cluster whose nodes start one by one: the first is alone, with no leader. */
  function staggered() {
    const network = new MemoryNetwork();
    const nodes = new Map<NodeId, DlmNode>();
    cleanups.push(async () => {
      await Promise.all([...nodes.values()].map((node) => node.stop()));
    });
    return (id: NodeId): DlmNode => {
      const storage = MemoryWritableStorage.bootstrap({ voters: IDS, learners: [] });
      const node = new DlmNode(
        id,
        storage,
        network.connect(id),
        NODE_OPTIONS,
        undefined,
        nodes.size + 1,
      );
      node.start();
      nodes.set(id, node);
      return node;
    };
  }

  async function served(node: DlmNode): Promise<NodeEndpoints> {
    const endpoints = await serve(node, [] as LogEntry[], { healthPollIntervalMs: 20 });
    cleanups.push(async () => {
      endpoints.lock.close();
      endpoints.cluster.close();
      endpoints.health.close();
      await endpoints.server.close(100);
    });
    return endpoints;
  }

  it('a lone node answers Status with no leader and is NOT_SERVING; it turns SERVING once a leader is elected', async () => {
    const start = staggered();
    const [first, second, third] = IDS as [NodeId, NodeId, NodeId];
    const alone = await served(start(first));

    const status = await alone.cluster.call('Status', {});
    expect(status.leader_id).toBe('');
    expect(status.header.leader_id).toBe('');
    expect(status.members.map((member: { id: string }) => member.id)).toEqual(IDS);
    expect((await alone.health.call('Check', { service: '' })).status).toBe('NOT_SERVING');

    const watched: string[] = [];
    const stream = alone.health.stream('Watch', { service: 'dlm.v1.Lock' });
    stream.on('data', (response) => watched.push(response.status));
    stream.on('error', () => {});
    await eventually(() => watched.length === 1);

    start(second);
    start(third);
    await eventually(() => watched.includes('SERVING'), 15_000);
    stream.cancel();
    expect(watched).toEqual(['NOT_SERVING', 'SERVING']);
    expect((await alone.health.call('Check', { service: 'dlm.v1.Cluster' })).status).toBe(
      'SERVING',
    );
  });

  it('Check refuses an unknown service with NOT_FOUND, and Watch reports SERVICE_UNKNOWN', async () => {
    const cluster = await ApiCluster.start();
    cleanups.push(() => cluster.stop());
    const health = cluster.at(await cluster.leaderId()).health;
    await eventually(
      async () => (await health.call('Check', { service: '' })).status === 'SERVING',
    );
    const error = await rpcError(health.call('Check', { service: 'no.such.Service' }));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    const stream = health.stream('Watch', { service: 'no.such.Service' });
    stream.on('error', () => {});
    const first = await new Promise<{ status: string }>((resolve) => stream.once('data', resolve));
    stream.cancel();
    expect(first.status).toBe('SERVICE_UNKNOWN');
  });

  it('serves reflection: the services are listed and their descriptors resolve', async () => {
    const node = staggered()(IDS[0] as NodeId);
    const endpoints = await served(node);
    const require = createRequire(import.meta.url);
    const reflectionProto = require.resolve(
      '@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
    );
    const definition = loadSync(reflectionProto, { keepCase: true, longs: String, defaults: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const client = new loaded.grpc.reflection.v1.ServerReflection(
      `127.0.0.1:${endpoints.server.port}`,
      grpc.credentials.createInsecure(),
    );
    cleanups.push(async () => client.close());
    const call = (
      client as unknown as {
        ServerReflectionInfo(): grpc.ClientDuplexStream<object, Record<string, unknown>>;
      }
    ).ServerReflectionInfo();
    const answers: Record<string, unknown>[] = [];
    call.on('data', (answer) => answers.push(answer));
    call.write({ list_services: '*' });
    call.write({ file_containing_symbol: 'dlm.v1.Lock' });
    await eventually(() => answers.length === 2);
    call.end();
    const listed = answers[0]?.list_services_response as { service: { name: string }[] };
    expect(listed.service.map((service) => service.name)).toEqual(
      expect.arrayContaining(['dlm.v1.Lock', 'dlm.v1.Cluster', 'grpc.health.v1.Health']),
    );
    const files = answers[1]?.file_descriptor_response as { file_descriptor_proto: Buffer[] };
    expect(files.file_descriptor_proto.length).toBeGreaterThan(0);
    expect(Buffer.concat(files.file_descriptor_proto).toString('latin1')).toContain(
      'AcquireRequest',
    );
  });
});
