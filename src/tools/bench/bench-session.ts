import { DlmClient, type Session } from '../../client/index.ts';
import { openRawDlmSession } from './dlm-raw-session.ts';
import { EtcdClient } from './etcd-client.ts';
import type { SystemName } from './server-cluster.ts';

/**
 * One bench client's session, the same shape for dlm and etcd: open a lease, take a
 * lock (waiting in the server's queue), give it back, close.
 */
export interface BenchGrant {
  readonly token: string;
  release(): Promise<void>;
}

export interface BenchSession {
  acquire(lock: string, waitMs: number): Promise<BenchGrant>;
  close(): Promise<void>;
}

export interface SessionSpec {
  readonly system: SystemName;
  /** Client addresses, the leader's first. */
  readonly endpoints: readonly string[];
  readonly ttlMs: number;
  readonly clientName: string;
  /** dlm only: through the client library (what users run), or plain grpc-js calls. */
  readonly dlmClient: DlmClientKind;
}

export type DlmClientKind = 'library' | 'raw';

/** Budget of a call that does not wait in a queue (open, release, close). */
const CALL_TIMEOUT_MS = 10_000;

export function openBenchSession(spec: SessionSpec): Promise<BenchSession> {
  switch (spec.system) {
    case 'dlm':
      return spec.dlmClient === 'raw' ? openRawDlmSession(spec) : openDlmSession(spec);
    case 'etcd':
      return openEtcdSession(spec);
  }
}

/** dlm through its own TypeScript client: what a user of dlm would run. */
async function openDlmSession(spec: SessionSpec): Promise<BenchSession> {
  const client = new DlmClient({ endpoints: spec.endpoints });
  let session: Session;
  try {
    session = await client.openSession({
      ttlMs: spec.ttlMs,
      clientName: spec.clientName,
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
  } catch (error) {
    client.close();
    throw error;
  }
  return {
    async acquire(lock, waitMs) {
      const handle = await session.acquire(lock, { waitMs, owner: spec.clientName });
      return { token: handle.token, release: () => handle.release() };
    },
    async close() {
      try {
        await session.close();
      } finally {
        client.close();
      }
    },
  };
}

/** etcd through v3lock: one lease per client, kept alive on its own stream. */
async function openEtcdSession(spec: SessionSpec): Promise<BenchSession> {
  const address = spec.endpoints[0];
  if (address === undefined) throw new Error('etcd session: no endpoint given');
  const client = new EtcdClient(address);
  const ttlS = Math.max(1, Math.round(spec.ttlMs / 1000));
  let leaseId: string;
  try {
    leaseId = await client.grantLease(ttlS, CALL_TIMEOUT_MS);
  } catch (error) {
    client.close();
    throw error;
  }
  // A third of the TTL, as dlm's client does.
  const keepAlive = client.keepLeaseAlive(leaseId, Math.max(100, Math.floor(spec.ttlMs / 3)));
  return {
    async acquire(lock, waitMs) {
      const grant = await client.acquire(lock, leaseId, waitMs + CALL_TIMEOUT_MS);
      return { token: grant.revision, release: () => client.release(grant.key, CALL_TIMEOUT_MS) };
    },
    async close() {
      keepAlive.stop();
      try {
        await client.revokeLease(leaseId, CALL_TIMEOUT_MS);
      } finally {
        client.close();
      }
    },
  };
}
