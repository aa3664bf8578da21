import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  askStatus,
  clusterService,
  type DlmConfigExtra,
  type DlmLaunch,
  type DlmNodeLayout,
  STOP_GRACE_MS,
  type StatusAnswer,
  spawnDlmNode,
  writeDlmClusterConfig,
} from './dlm-cluster.ts';
import { isRunning, stopProcesses } from './processes.ts';
import type { ServerCluster, ServerMember } from './server-cluster.ts';

/**
 * A fresh 3-node dlm cluster for one scale cell: like the pair cells' cluster, but its
 * config may raise limits, and its nodes can be killed and started again (the locks
 * cell times restarts). Members' pids change on a restart, so `members` is read anew.
 */
/**
 * grpc-js backs off reconnecting up to two minutes: a restart timed through a channel
 * that failed while the node was down would measure the backoff. Short and capped.
 */
export const RESTART_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.min_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 250,
};

export class ScaleCluster implements ServerCluster {
  readonly system = 'dlm' as const;
  private readonly children = new Map<string, ChildProcess>();
  private readonly statusClients = new Map<string, grpc.Client>();

  private constructor(
    readonly dir: string,
    readonly nodes: readonly DlmNodeLayout[],
    private readonly configPath: string,
    private readonly launch: DlmLaunch,
  ) {
    const Cluster = clusterService();
    for (const node of nodes) {
      this.statusClients.set(
        node.id,
        new Cluster(node.clientAddress, grpc.credentials.createInsecure(), RESTART_CHANNEL_OPTIONS),
      );
    }
  }

  static async start(
    dir: string,
    extra: DlmConfigExtra,
    launch: DlmLaunch = {},
  ): Promise<ScaleCluster> {
    const { nodes, configPath } = await writeDlmClusterConfig(dir, extra);
    const cluster = new ScaleCluster(dir, nodes, configPath, launch);
    for (const node of nodes) cluster.startNode(node.id);
    return cluster;
  }

  get members(): ServerMember[] {
    return this.nodes.map((node) => ({
      name: node.id,
      clientAddress: node.clientAddress,
      pid: this.children.get(node.id)?.pid ?? null,
    }));
  }

  node(id: string): DlmNodeLayout {
    const node = this.nodes.find((each) => each.id === id);
    if (node === undefined) throw new Error(`no node ${id} in the scale cluster`);
    return node;
  }

  pidOf(id: string): number {
    const child = this.children.get(id);
    if (child?.pid === undefined || !isRunning(child)) throw new Error(`node ${id} is not running`);
    return child.pid;
  }

  /** Where `dlm serve` keeps this node's LevelDB (dataDir '.' is the config's folder). */
  dataDirOf(id: string): string {
    return join(this.dir, id);
  }

  startNode(id: string): void {
    const running = this.children.get(id);
    if (running !== undefined && isRunning(running)) throw new Error(`node ${id} is running`);
    this.children.set(id, spawnDlmNode(this.configPath, id, this.dir, this.launch));
  }

  /** SIGKILL: a crash, nothing flushed beyond what the node synced. */
  async killNode(id: string): Promise<void> {
    const child = this.children.get(id);
    if (child === undefined || !isRunning(child)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  /** This node's Status, or null if it does not answer within a second. */
  status(id: string): Promise<StatusAnswer | null> {
    const client = this.statusClients.get(id);
    if (client === undefined) return Promise.resolve(null);
    return askStatus(client).catch(() => null);
  }

  async leader(): Promise<string | null> {
    for (const node of this.nodes) {
      const leaderId = (await this.status(node.id))?.leader_id ?? '';
      if (leaderId !== '') return leaderId;
    }
    return null;
  }

  async stop(): Promise<void> {
    for (const client of this.statusClients.values()) client.close();
    await stopProcesses([...this.children.values()], STOP_GRACE_MS);
  }
}
