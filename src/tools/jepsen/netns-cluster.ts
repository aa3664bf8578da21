import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeConfigInput } from '../../config/index.ts';
import { peerTransportFromEnv } from '../process-cluster.ts';
import type { NetnsNetwork } from './netns.ts';
import type { ProxyMesh } from './proxy-mesh.ts';

/**
 * `dlm serve` processes, one per network namespace of a NetnsNetwork, with the config
 * that makes it work: every node listens on its own bridge address (the same ports on
 * every node), clients dial those addresses from the root namespace, and peers dial
 * either the same addresses or, with a ProxyMesh, the virtual ones its proxies serve.
 */
export interface NetnsClusterOptions {
  readonly network: NetnsNetwork;
  /** Config, data and logs go here. */
  readonly dir: string;
  /** Route every peer link through its own proxy. */
  readonly mesh?: ProxyMesh;
  /** Merged into the config file (raft timing, lock limits…). */
  readonly extraConfig?: Readonly<Record<string, unknown>>;
}

export const PEER_PORT = 7000;
export const CLIENT_PORT = 7100;
export const METRICS_PORT = 9100;
const DLM_BIN = fileURLToPath(new URL('../../../bin/dlm', import.meta.url));

/** The nodes section of the config for a network (and its proxies, if any). */
export function netnsNodes(network: NetnsNetwork, mesh?: ProxyMesh): NodeConfigInput[] {
  return network.nodeIds.map((id) => {
    const host = network.address(id);
    const peer = `${host}:${PEER_PORT}`;
    return {
      id,
      peerAddress: mesh === undefined ? peer : mesh.advertisedPeerAddress(id),
      clientAddress: `${host}:${CLIENT_PORT}`,
      metricsAddress: `${host}:${METRICS_PORT}`,
      ...(mesh === undefined ? {} : { peerListenAddress: mesh.peerListenAddress(id) }),
    };
  });
}

export class NetnsCluster {
  readonly nodes: readonly NodeConfigInput[];
  readonly configPath: string;
  private readonly processes = new Map<string, ChildProcess>();

  constructor(private readonly options: NetnsClusterOptions) {
    this.nodes = netnsNodes(options.network, options.mesh);
    this.configPath = join(options.dir, 'cluster.config.json');
    const config = {
      nodes: this.nodes,
      dataDir: join(options.dir, 'data'),
      ...peerTransportFromEnv(),
      ...options.extraConfig,
    };
    writeFileSync(this.configPath, `${JSON.stringify(config, null, 2)}\n`);
  }

  node(id: string): NodeConfigInput {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new Error(`unknown node ${JSON.stringify(id)}`);
    return node;
  }

  logPath(id: string): string {
    return join(this.options.dir, `${id}.log`);
  }

  /** Starts `dlm serve` for one node inside its namespace; stdout and stderr go to its log. */
  start(id: string, env: Readonly<Record<string, string>> = {}): void {
    if (this.isRunning(id)) throw new Error(`${id} is already running`);
    const log = openSync(this.logPath(id), 'a');
    const child = this.options.network.spawn(
      id,
      process.execPath,
      [DLM_BIN, 'serve', '--config', this.configPath, '--node', id],
      { stdio: ['ignore', log, log], env: { ...process.env, ...env } },
    );
    // The child has its own copy of the descriptor.
    closeSync(log);
    this.processes.set(id, child);
  }

  startAll(): void {
    for (const { id } of this.nodes) this.start(id);
  }

  isRunning(id: string): boolean {
    const child = this.processes.get(id);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Sends a signal and waits for the process to exit (SIGKILL by default). */
  async stop(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.processes.get(id);
    if (child === undefined || !this.isRunning(id)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.processes.delete(id);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((id) => this.stop(id)));
  }
}
