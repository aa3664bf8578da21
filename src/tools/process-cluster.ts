import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { nodeProcessEnv } from '../cli/node-env.ts';
import { freePort } from './free-port.ts';

/**
 * Real `dlm serve` processes (one OS process per node, so SIGKILL and SIGSTOP reach the
 * node itself) plus a small grpc-js client, for cluster tests and benchmarks.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ProcessNode {
  readonly id: string;
  readonly peerAddress: string;
  readonly clientAddress: string;
  readonly metricsAddress: string;
}

/**
 * Starts one node's process. The default spawns it here; a Jepsen run with partitions
 * passes one that spawns it inside the node's network namespace (NetnsNetwork.spawn).
 * It must return the node's own process (`ip netns exec` execs the command, so it
 * does), since kill and SIGSTOP go to that pid.
 */
export type NodeSpawner = (
  id: string,
  file: string,
  args: readonly string[],
  options: SpawnOptions,
) => ChildProcess;

const spawnHere: NodeSpawner = (_id, file, args, options) => spawn(file, args, options);

export interface StartOptions {
  /** Start empty and wait to be added (`dlm serve --join`), with every node's config. */
  readonly join?: boolean;
  /** Added to the environment, e.g. DLM_LOG_LEVEL. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Node's arguments before `serve`: this checkout's bin/dlm unless given, e.g. an
   * installed package's bin, or `--import tsx src/cli/main.ts` to run the sources.
   */
  readonly command?: readonly string[];
  /** A founder's own config file (see `writeConfig`) instead of the shared one. */
  readonly configPath?: string;
}

export interface DlmRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

type Callback = (error: grpc.ServiceError | null, response: Record<string, unknown>) => void;
type Method = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback,
) => void;
type StreamMethod = (
  request: object,
  options: grpc.CallOptions,
) => grpc.ClientReadableStream<Record<string, unknown>>;

/** A server-streaming call in progress (see `ProcessCluster.stream`). */
export interface ServerStream {
  /** Every message received so far, in order. */
  readonly messages: readonly Record<string, unknown>[];
  /** Resolves once the server has sent its initial metadata (or the call has ended). */
  readonly ready: Promise<void>;
  /** Resolves with the final status once the call ends: CANCELLED after `cancel()`. */
  readonly ended: Promise<grpc.StatusObject>;
  /** Cancels the call from the client side. */
  cancel(): void;
}

export class ProcessCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'dlm-cluster-'));
  /** The founders' config: only the nodes that form the cluster at first. */
  readonly configPath = join(this.dir, 'cluster.config.json');
  /** Every node, founders and joiners: what a joiner and `dlm member add` read. */
  readonly allNodesConfigPath = join(this.dir, 'all-nodes.config.json');
  private readonly processes = new Map<string, ChildProcess>();
  /**
   * Nodes ever started with `join`: their restarts read every node's config (without
   * --join: the database holds their state), as the founders' may not name them.
   */
  private readonly joined = new Set<string>();
  /** Added to every node's environment (a start's own `env` wins), e.g. DLM_LOG_LEVEL. */
  env: Readonly<Record<string, string>> = {};
  private readonly clients = new Map<string, Record<string, Method>>();
  /** Plaintext, or mutual TLS with the client certificate of the config's `tls` section. */
  credentials = grpc.credentials.createInsecure();
  /** grpc-js options of the harness's clients, e.g. an interceptor that sends a bearer token. */
  clientOptions: grpc.ClientOptions = {};

  private constructor(
    readonly nodes: readonly ProcessNode[],
    readonly founders: readonly ProcessNode[],
    private readonly extra: Record<string, unknown>,
    private readonly spawnNode: NodeSpawner = spawnHere,
  ) {}

  /**
   * `size` nodes with fresh ports; the first `founders` of them (all by default) found
   * the cluster, the others can join it later (`start(id, { join: true })`).
   */
  static async create(
    size: number,
    extra: Record<string, unknown> = {},
    founders = size,
  ): Promise<ProcessCluster> {
    const nodes: ProcessNode[] = [];
    for (let i = 1; i <= size; i++) {
      nodes.push({
        id: `n${i}`,
        peerAddress: `127.0.0.1:${await freePort()}`,
        clientAddress: `127.0.0.1:${await freePort()}`,
        metricsAddress: `127.0.0.1:${await freePort()}`,
      });
    }
    return ProcessCluster.withNodes(nodes, extra, founders);
  }

  /**
   * A cluster of the given nodes (addresses chosen by the caller, e.g. one per network
   * namespace), each started through `spawnNode`; the first `founders` found it.
   */
  static withNodes(
    nodes: readonly ProcessNode[],
    extra: Record<string, unknown> = {},
    founders = nodes.length,
    spawnNode: NodeSpawner = spawnHere,
  ): ProcessCluster {
    const cluster = new ProcessCluster(nodes, nodes.slice(0, founders), extra, spawnNode);
    writeFileSync(cluster.configPath, JSON.stringify(cluster.founderConfig()));
    writeFileSync(
      cluster.allNodesConfigPath,
      JSON.stringify({ ...cluster.founderConfig(), nodes }),
    );
    return cluster;
  }

  private founderConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const config = {
      dataDir: './data',
      raft: { tickIntervalMs: 20 },
      ...peerTransportFromEnv(),
      ...this.extra,
      ...extra,
    };
    return { nodes: this.founders, ...config };
  }

  /**
   * Writes another founders' config beside the shared one, with `extra` over its
   * sections (as a node whose file differs from the others'), and returns its path.
   */
  writeConfig(name: string, extra: Record<string, unknown>): string {
    const path = join(this.dir, name);
    writeFileSync(path, JSON.stringify(this.founderConfig(extra)));
    return path;
  }

  /**
   * A founder runs with the founders' config; a joiner starts empty, with every node's,
   * and restarts with every node's too. A node whose process still runs is refused: the
   * new handle would replace the old one, which then serves on, unseen by isRunning,
   * kill and pause (two nemeses restarting one node at once did that, seed 1203).
   */
  start(id: string, options: StartOptions = {}): void {
    if (this.isRunning(id)) {
      throw new Error(
        `cannot start ${id}: its process ${this.pid(id)} is still running (kill it first)`,
      );
    }
    const log = openSync(this.logPath(id), 'a');
    if (options.join) this.joined.add(id);
    const args = options.join
      ? ['--config', this.allNodesConfigPath, '--node', id, '--join']
      : ['--config', options.configPath ?? this.configPathOf(id), '--node', id];
    const command = options.command ?? [join(ROOT, 'bin/dlm')];
    const child = this.spawnNode(id, process.execPath, [...command, 'serve', ...args], {
      stdio: ['ignore', log, log],
      env: nodeProcessEnv({ ...process.env, ...this.env, ...options.env }),
    });
    this.processes.set(id, child);
  }

  /** The config a node restarts with: every node's if it joined, else the founders'. */
  configPathOf(id: string): string {
    return this.joined.has(id) ? this.allNodesConfigPath : this.configPath;
  }

  /** Runs the `dlm` command as a new user would, and collects what it printed. */
  dlm(args: readonly string[], timeoutMs = 60_000): Promise<DlmRun> {
    return new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        [join(ROOT, 'bin/dlm'), ...args],
        { timeout: timeoutMs },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
          if (code === null) reject(new Error(`dlm ${args.join(' ')}: ${error?.message}`));
          else resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /** The OS process id of a running node, for reading its CPU time (benchmarks). */
  pid(id: string): number | undefined {
    return this.processes.get(id)?.pid;
  }

  /** Starts every founder. */
  startAll(options: StartOptions = {}): void {
    for (const node of this.founders) this.start(node.id, options);
  }

  /** A node's data directory (the config's dataDir is ./data beside it). */
  dataDirOf(id: string): string {
    return join(this.dir, 'data', id);
  }

  /** Where a node's stdout and stderr (its pino log) go. */
  logPath(id: string): string {
    return join(this.dir, `${id}.log`);
  }

  /** A node's pino log so far, one object per JSON line. */
  logLines(id: string): Record<string, unknown>[] {
    return readFileSync(this.logPath(id), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  isRunning(id: string): boolean {
    const child = this.processes.get(id);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** SIGKILL: no shutdown code runs, nothing unsynced survives. */
  async kill(id: string): Promise<void> {
    await this.signal(id, 'SIGKILL');
  }

  async terminate(id: string): Promise<number | null> {
    return this.signal(id, 'SIGTERM');
  }

  /** SIGSTOP / SIGCONT: the process freezes, its timers and sockets with it. */
  pause(id: string): void {
    this.processes.get(id)?.kill('SIGSTOP');
  }

  resume(id: string): void {
    this.processes.get(id)?.kill('SIGCONT');
  }

  private async signal(id: string, signal: NodeJS.Signals): Promise<number | null> {
    const child = this.processes.get(id);
    if (child === undefined || !this.isRunning(id)) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    child.kill(signal);
    const code = await exited;
    this.processes.delete(id);
    return code;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((id) => this.kill(id)));
    for (const client of this.clients.values()) (client as unknown as grpc.Client).close();
    this.clients.clear();
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The node that reports itself leader through Cluster.Status, or null. */
  async leader(): Promise<string | null> {
    for (const node of this.nodes) {
      if (!this.isRunning(node.id)) continue;
      try {
        const status = await this.call(node.id, 'Status', {}, 500, 'Cluster');
        const header = status.header as { leader_id?: string } | undefined;
        const leaderId = header?.leader_id ?? '';
        if (leaderId !== '' && this.isRunning(leaderId)) return leaderId;
      } catch {
        // Starting up or down; ask another.
      }
    }
    return null;
  }

  /**
   * The leader, once the same node has led for `stableMs`: right after start-up (while
   * founders learn the cluster id) or a failure, a first leader can still be replaced,
   * and a test that then asks it for its metrics or logs would ask the wrong node.
   */
  async waitForLeader(timeoutMs: number, stableMs = 500): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let candidate: string | null = null;
    let sinceMs = 0;
    for (;;) {
      const leader = await this.leader();
      if (leader !== candidate) {
        candidate = leader;
        sinceMs = Date.now();
      }
      if (candidate !== null && Date.now() - sinceMs >= stableMs) return candidate;
      if (Date.now() > deadline)
        throw new Error(`no stable leader within ${timeoutMs} ms; logs in ${this.dir}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** One call to one node's API. */
  call(
    id: string,
    method: string,
    request: object,
    deadlineMs = 5_000,
    service = 'Lock',
    metadata = new grpc.Metadata(),
  ): Promise<Record<string, unknown>> {
    const client = this.client(id, service);
    return new Promise((resolve, reject) => {
      const invoke = client[method];
      if (invoke === undefined) {
        reject(new Error(`no method ${service}.${method}`));
        return;
      }
      invoke.call(
        client,
        request,
        metadata,
        // No waitForReady: a call on a channel still connecting fails fast with
        // UNAVAILABLE "No connection established" (callNode retries that).
        { deadline: Date.now() + deadlineMs },
        (error, response) =>
          error === null ? resolve(response) : reject(this.explainFailure(id, error)),
      );
    });
  }

  /**
   * A call to a node that has exited says so, with its exit and the end of its log:
   * otherwise a crash shows only as UNAVAILABLE "No connection established".
   */
  private explainFailure(id: string, error: grpc.ServiceError): grpc.ServiceError {
    const child = this.processes.get(id);
    if (child === undefined || this.isRunning(id)) return error;
    const exit = child.signalCode ?? `code ${String(child.exitCode)}`;
    let tail = '';
    try {
      tail = readFileSync(this.logPath(id), 'utf8').slice(-3_000);
    } catch {
      // No log yet.
    }
    error.message += ` (${id} has exited, ${exit}; the end of its log:\n${tail})`;
    return error;
  }

  /**
   * Calls one node, retrying UNAVAILABLE with the same request: a fresh connection can
   * fail fast while the channel is still connecting.
   */
  async callNode(
    id: string,
    method: string,
    request: object,
    timeoutMs = 10_000,
    service = 'Lock',
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.call(id, method, request, 2_000, service);
      } catch (error) {
        if ((error as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || Date.now() > deadline)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /**
   * Calls any running node (of `among`, when given), retrying UNAVAILABLE and
   * DEADLINE_EXCEEDED with the same request.
   */
  /**
   * An Acquire through callAny, whose retries keep one request id. When an attempt's
   * answer was lost (its deadline passed) the node gives that grant back, and the
   * retry is told grantEnded; then this asks again as a new request, until the deadline.
   */
  async acquireAny(
    request: Record<string, unknown>,
    timeoutMs = 20_000,
    among?: readonly string[],
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const attempt = { ...request, request_id: newRequestId() };
      try {
        return await this.callAny('Acquire', attempt, Math.max(1, deadline - Date.now()), among);
      } catch (error) {
        const ended =
          (error as grpc.ServiceError).metadata?.get('dlm-error-code')[0] === 'grantEnded';
        if (!ended || Date.now() > deadline) throw error;
      }
    }
  }

  async callAny(
    method: string,
    request: object,
    timeoutMs = 20_000,
    among?: readonly string[],
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const running = this.nodes.filter(
        (node) => this.isRunning(node.id) && (among === undefined || among.includes(node.id)),
      );
      const target = running[attempt % Math.max(running.length, 1)];
      try {
        if (target === undefined) throw new Error('no node is running');
        return await this.call(target.id, method, request, 2_000);
      } catch (error) {
        const code = (error as grpc.ServiceError).code;
        const retryable =
          code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
        if (!retryable || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /**
   * Opens a server-streaming call to one node and collects what it sends: the messages
   * as they come, and the final status once the call ends.
   */
  stream(
    id: string,
    method: string,
    request: object,
    deadlineMs = 60_000,
    service = 'Lock',
  ): ServerStream {
    const client = this.client(id, service) as unknown as Record<string, StreamMethod>;
    const invoke = client[method];
    if (invoke === undefined) throw new Error(`no method ${service}.${method}`);
    const call = invoke.call(client, request, { deadline: Date.now() + deadlineMs });
    const messages: Record<string, unknown>[] = [];
    call.on('data', (message: Record<string, unknown>) => messages.push(message));
    // The final status also arrives as 'status'; without a listener 'error' would throw.
    call.on('error', () => {});
    const ended = new Promise<grpc.StatusObject>((resolve) => call.once('status', resolve));
    const ready = Promise.race([
      new Promise<void>((resolve) => call.once('metadata', () => resolve())),
      ended.then(() => undefined),
    ]);
    return { messages, ready, ended, cancel: () => call.cancel() };
  }

  private client(id: string, service: string): Record<string, Method> {
    const key = `${service}/${id}`;
    const existing = this.clients.get(key);
    if (existing !== undefined) return existing;
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new Error(`unknown node ${id}`);
    const Client = loadServices()[service];
    if (Client === undefined) throw new Error(`unknown service ${service}`);
    const client = new Client(
      node.clientAddress,
      this.credentials,
      this.clientOptions,
    ) as unknown as Record<string, Method>;
    this.clients.set(key, client);
    return client;
  }
}

let services: Record<string, grpc.ServiceClientConstructor> | null = null;

/** The generated client constructors by service name (Lock, Cluster, Health). */
export function loadServices(): Record<string, grpc.ServiceClientConstructor> {
  if (services !== null) return services;
  const definition = protoLoader.loadSync(['dlm.proto', 'health.proto'], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    includeDirs: [join(ROOT, 'proto')],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { v1: { Lock: grpc.ServiceClientConstructor; Cluster: grpc.ServiceClientConstructor } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  services = {
    Lock: loaded.dlm.v1.Lock,
    Cluster: loaded.dlm.v1.Cluster,
    Health: loaded.grpc.health.v1.Health,
  };
  return services;
}

let requestCounter = 0;

/** A request id unique within this process run (random high part, counter low part). */
export function newRequestId(): string {
  requestCounter++;
  return (
    BigInt(Math.floor(Math.random() * 2 ** 40)) * 1_000_000n +
    BigInt(requestCounter)
  ).toString();
}

/**
 * DLM_TEST_PEER_TRANSPORT=grpc (or tcp) runs every process cluster (cluster tests,
 * Jepsen) over that peer transport instead of the default, unless a test names one.
 */
export function peerTransportFromEnv(): { peerTransport?: string } {
  const kind = process.env.DLM_TEST_PEER_TRANSPORT;
  return kind === undefined || kind === '' ? {} : { peerTransport: kind };
}
