import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * A minimal etcd v3 client over grpc-js for the bench: leases with keepalive, the
 * v3lock Lock/Unlock calls, and Maintenance.Status to find the leader. int64 and uint64
 * travel as decimal strings (exact), names and keys as Buffers.
 */
const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url));

type Answer = Record<string, unknown>;
type Unary = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, answer: Answer) => void,
) => grpc.ClientUnaryCall;

interface Services {
  readonly Lease: grpc.ServiceClientConstructor;
  readonly Maintenance: grpc.ServiceClientConstructor;
  readonly Lock: grpc.ServiceClientConstructor;
}

let services: Services | null = null;

function loadServices(): Services {
  if (services !== null) return services;
  const definition = loadSync(['etcd-rpc.proto', 'etcd-v3lock.proto'], {
    keepCase: true,
    longs: String,
    defaults: true,
    includeDirs: [PROTO_DIR],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    etcdserverpb: {
      Lease: grpc.ServiceClientConstructor;
      Maintenance: grpc.ServiceClientConstructor;
    };
    v3lockpb: { Lock: grpc.ServiceClientConstructor };
  };
  services = {
    Lease: loaded.etcdserverpb.Lease,
    Maintenance: loaded.etcdserverpb.Maintenance,
    Lock: loaded.v3lockpb.Lock,
  };
  return services;
}

export interface EtcdLockGrant {
  readonly key: Buffer;
  /** The store revision the grant was made at: it rises from grant to grant of a lock. */
  readonly revision: string;
}

export class EtcdClient {
  private readonly lease: grpc.Client;
  private readonly lock: grpc.Client;
  private readonly maintenance: grpc.Client;

  constructor(readonly address: string) {
    const { Lease, Lock, Maintenance } = loadServices();
    const credentials = grpc.credentials.createInsecure();
    this.lease = new Lease(address, credentials);
    this.lock = new Lock(address, credentials);
    this.maintenance = new Maintenance(address, credentials);
  }

  /** A lease of `ttlS` seconds; returns its id. */
  async grantLease(ttlS: number, timeoutMs: number): Promise<string> {
    const answer = await unary(this.lease, 'LeaseGrant', { TTL: String(ttlS) }, timeoutMs);
    if (typeof answer.error === 'string' && answer.error !== '') {
      throw new Error(`etcd at ${this.address} refused a ${ttlS} s lease: ${answer.error}`);
    }
    return String(answer.ID);
  }

  async revokeLease(id: string, timeoutMs: number): Promise<void> {
    await unary(this.lease, 'LeaseRevoke', { ID: id }, timeoutMs);
  }

  /** A keepalive stream for lease `id`, refreshed every `intervalMs` until stopped. */
  keepLeaseAlive(id: string, intervalMs: number): { stop(): void } {
    const stream = (
      this.lease as unknown as Record<string, () => grpc.ClientDuplexStream<object, Answer>>
    ).LeaseKeepAlive?.call(this.lease);
    if (stream === undefined) throw new Error('etcd proto has no Lease.LeaseKeepAlive');
    // The stream ends with CANCELLED when stopped; other failures show up as lock errors.
    stream.on('error', () => {});
    stream.on('data', () => {});
    stream.write({ ID: id });
    const timer = setInterval(() => stream.write({ ID: id }), intervalMs);
    return {
      stop: () => {
        clearInterval(timer);
        stream.cancel();
      },
    };
  }

  /** Waits (up to `timeoutMs`) for the lock `name` under lease `leaseId`. */
  async acquire(name: string, leaseId: string, timeoutMs: number): Promise<EtcdLockGrant> {
    const answer = await unary(
      this.lock,
      'Lock',
      { name: Buffer.from(name), lease: leaseId },
      timeoutMs,
    );
    const header = answer.header as { revision?: string } | undefined;
    if (!Buffer.isBuffer(answer.key) || header?.revision === undefined) {
      throw new Error(`etcd at ${this.address}: Lock answer for ${name} has no key or revision`);
    }
    return { key: answer.key, revision: header.revision };
  }

  async release(key: Buffer, timeoutMs: number): Promise<void> {
    await unary(this.lock, 'Unlock', { key }, timeoutMs);
  }

  /** This member's id and the leader's id, as it sees them. */
  async status(timeoutMs: number): Promise<{ memberId: string; leaderId: string }> {
    const answer = await unary(this.maintenance, 'Status', {}, timeoutMs);
    const header = answer.header as { member_id?: string } | undefined;
    return { memberId: String(header?.member_id ?? '0'), leaderId: String(answer.leader ?? '0') };
  }

  close(): void {
    this.lease.close();
    this.lock.close();
    this.maintenance.close();
  }
}

function unary(client: grpc.Client, method: string, request: object, timeoutMs: number) {
  const invoke = (client as unknown as Record<string, Unary>)[method];
  if (invoke === undefined) return Promise.reject(new Error(`etcd proto has no ${method}`));
  return new Promise<Answer>((resolve, reject) => {
    invoke.call(client, request, { deadline: Date.now() + timeoutMs }, (error, answer) =>
      error === null ? resolve(answer) : reject(error),
    );
  });
}
