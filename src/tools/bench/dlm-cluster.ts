import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { nodeProcessEnv } from '../../cli/node-env.ts';
import { processCpuMs } from './proc-cpu.ts';
import { freePort, spawnLogged, stopProcesses } from './processes.ts';
import type { ServerCluster, ServerMember } from './server-cluster.ts';

/**
 * A dlm cluster for the bench: three fresh `dlm serve` processes in a temp dir (one
 * OS process per node, so each one's CPU can be read), or an existing cluster given by
 * its endpoints.
 */
const DLM_BIN = fileURLToPath(new URL('../../../bin/dlm', import.meta.url));
const PROTO_PATH = fileURLToPath(new URL('../../../proto/dlm.proto', import.meta.url));
const NODES = 3;
/** A bench cluster's data is thrown away: a clean shutdown is not worth a long wait. */
export const STOP_GRACE_MS = 5_000;
const STATUS_TIMEOUT_MS = 1_000;

/** One node of a cluster the bench starts: its addresses, all on loopback. */
export interface DlmNodeLayout {
  readonly id: string;
  readonly peerAddress: string;
  readonly clientAddress: string;
  readonly metricsAddress: string;
}

/** Config sections the bench may add (the scale cells raise limits); merged over the tick. */
export interface DlmConfigExtra {
  readonly lock?: Readonly<Record<string, number>>;
  readonly runtime?: Readonly<Record<string, number>>;
  readonly peerTransport?: 'grpc' | 'tcp';
}

/**
 * Writes a 3-node cluster.config.json into `dir` on free loopback ports. The tick
 * matches what `npm run cluster` writes; everything else is the default unless `extra`
 * says otherwise.
 */
export async function writeDlmClusterConfig(
  dir: string,
  extra: DlmConfigExtra = {},
): Promise<{ nodes: DlmNodeLayout[]; configPath: string }> {
  const nodes: DlmNodeLayout[] = [];
  for (let i = 1; i <= NODES; i++) {
    nodes.push({
      id: `n${i}`,
      peerAddress: `127.0.0.1:${await freePort()}`,
      clientAddress: `127.0.0.1:${await freePort()}`,
      metricsAddress: `127.0.0.1:${await freePort()}`,
    });
  }
  const configPath = join(dir, 'cluster.config.json');
  const config = { nodes, dataDir: '.', raft: { tickIntervalMs: 50 }, ...extra };
  writeFileSync(configPath, JSON.stringify(config));
  return { nodes, configPath };
}

/** How the bench runs each `dlm serve` it starts, beyond the config. */
export interface DlmLaunch {
  /** Each node writes a V8 CPU profile here when it stops. */
  readonly cpuProfDir?: string | null;
  /** Node/V8 flags put before the script (--node-flags). */
  readonly nodeFlags?: readonly string[];
}

/** `dlm serve` for one node of the config, its output appended to `<dir>/<id>.log`. */
export function spawnDlmNode(
  configPath: string,
  id: string,
  dir: string,
  launch: DlmLaunch = {},
): ChildProcess {
  const { cpuProfDir = null, nodeFlags = [] } = launch;
  const profile = cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir];
  return spawnLogged(
    process.execPath,
    [...profile, ...nodeFlags, DLM_BIN, 'serve', '--config', configPath, '--node', id],
    dlmLogPath(dir, id),
    nodeProcessEnv(),
  );
}

export function dlmLogPath(dir: string, id: string): string {
  return join(dir, `${id}.log`);
}

export async function startDlmCluster(
  dir: string,
  extra: DlmConfigExtra = {},
  launch: DlmLaunch = {},
): Promise<ServerCluster> {
  const { nodes, configPath } = await writeDlmClusterConfig(dir, extra);
  const children = nodes.map((node) => spawnDlmNode(configPath, node.id, dir, launch));
  const members = nodes.map((node, i) => ({
    name: node.id,
    clientAddress: node.clientAddress,
    pid: children[i]?.pid ?? null,
    logPath: dlmLogPath(dir, node.id),
  }));
  return new DlmCluster(members, children);
}

/**
 * A cluster this run did not start: nothing to stop, and CPU figures only if the
 * caller names the node processes (`pids`, in the order of `endpoints`).
 */
export function existingDlmCluster(
  endpoints: readonly string[],
  pids: readonly number[] | null,
): ServerCluster {
  const members = endpoints.map((address, i) => ({
    name: address,
    clientAddress: address,
    pid: pids?.[i] ?? null,
  }));
  for (const member of members) if (member.pid !== null) processCpuMs(member.pid);
  return new DlmCluster(members, []);
}

class DlmCluster implements ServerCluster {
  readonly system = 'dlm' as const;
  private readonly statusClients: grpc.Client[];

  constructor(
    readonly members: readonly ServerMember[],
    private readonly children: readonly ChildProcess[],
  ) {
    const Cluster = clusterService();
    this.statusClients = members.map(
      (member) => new Cluster(member.clientAddress, grpc.credentials.createInsecure()),
    );
  }

  /**
   * Asks each member in turn; the first that names a leader decides. Throws once a node
   * process this run started has exited (a refused config, a crash): no leader would come.
   */
  async leader(): Promise<string | null> {
    const exited = this.children.findIndex((child) => child.exitCode !== null);
    if (exited !== -1) {
      const child = this.children[exited];
      const member = this.members[exited];
      throw new Error(
        `dlm: node ${member?.name} exited (code ${child?.exitCode}) before the cluster elected a leader; the end of its log (${member?.logPath}):\n${logTail(member?.logPath)}`,
      );
    }
    for (const [i, client] of this.statusClients.entries()) {
      const status = await askStatus(client).catch(() => null);
      const leaderId = status?.leader_id ?? '';
      if (leaderId === '') continue;
      // Started here, members are named by node id; given as endpoints, by address.
      const byId = this.members.find((member) => member.name === leaderId);
      if (byId !== undefined) return byId.name;
      const address = status?.members.find((member) => member.id === leaderId)?.client_address;
      const byAddress = this.members.find((member) => member.clientAddress === address);
      return byAddress?.name ?? this.members[i]?.name ?? null;
    }
    return null;
  }

  async stop(): Promise<void> {
    for (const client of this.statusClients) client.close();
    await stopProcesses(this.children, STOP_GRACE_MS);
  }
}

export interface StatusAnswer {
  readonly leader_id: string;
  readonly commit_index: string;
  readonly applied_index: string;
  readonly members: readonly { id: string; client_address: string }[];
}

export function askStatus(client: grpc.Client): Promise<StatusAnswer> {
  const status = (client as unknown as Record<string, grpc.requestCallback<StatusAnswer>>)
    .Status as unknown as (
    request: object,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, answer: StatusAnswer) => void,
  ) => void;
  return new Promise((resolve, reject) => {
    status.call(client, {}, { deadline: Date.now() + STATUS_TIMEOUT_MS }, (error, answer) =>
      error === null ? resolve(answer) : reject(error),
    );
  });
}

let clusterConstructor: grpc.ServiceClientConstructor | null = null;

export function clusterService(): grpc.ServiceClientConstructor {
  if (clusterConstructor !== null) return clusterConstructor;
  const definition = loadSync(PROTO_PATH, { keepCase: true, longs: String, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { v1: { Cluster: grpc.ServiceClientConstructor } };
  };
  clusterConstructor = loaded.dlm.v1.Cluster;
  return clusterConstructor;
}

/** The last lines of a node's log, for an error that says why it exited. */
function logTail(path: string | undefined, lines = 8): string {
  if (path === undefined) return '  (no log)';
  try {
    const text = readFileSync(path, 'utf8').trimEnd();
    return text
      .split('\n')
      .slice(-lines)
      .map((line) => `  ${line}`)
      .join('\n');
  } catch (error) {
    return `  (unreadable: ${String(error)})`;
  }
}
