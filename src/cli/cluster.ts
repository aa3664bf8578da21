import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClusterFileConfig, loadClusterConfig } from '../config/index.ts';
import { clientTlsFiles } from '../config/tls.ts';
import { type MetricsClientTls, metricsGet } from '../node/console/metrics-get.ts';
import { type CliIo, DEFAULT_CONFIG_PATH } from './cli.ts';
import { nodeProcessEnv } from './node-env.ts';

/**
 * `dlm cluster` (npm start): runs every node of the config file as its own `dlm serve`
 * process, shows one live status line per node, and stops them all on Ctrl-C. Each
 * node's log goes to `<dataDir>/<id>.log`.
 */
const DLM_BIN = fileURLToPath(new URL('../../bin/dlm', import.meta.url));
const STATUS_INTERVAL_MS = 500;
const STOP_GRACE_MS = 10_000;

interface NodeStatusLine {
  readonly id: string;
  readonly text: string;
}

export async function runCluster(configPath: string, io: CliIo): Promise<number> {
  const config = await loadClusterConfig(configPath);
  mkdirSync(config.dataDir, { recursive: true });
  const children = config.nodes.map((node) => startNode(configPath, node.id, config.dataDir));
  io.out(introduction(config, configPath));
  const display = new StatusDisplay(io, process.stdout.isTTY === true);
  const tls = statusTls(config);
  const timer = setInterval(() => {
    void Promise.all(
      config.nodes.map((node) => nodeStatus(node.id, node.metricsAddress, tls)),
    ).then((lines) => display.show(lines));
  }, STATUS_INTERVAL_MS);
  const exited = children.map(
    (child) => new Promise<void>((resolve) => child.once('exit', () => resolve())),
  );
  await Promise.race([untilInterrupted(), Promise.all(exited)]);
  clearInterval(timer);
  io.out('\nstopping the nodes (SIGTERM)...\n');
  await stopAll(children, exited);
  io.out('all nodes stopped\n');
  return 0;
}

function startNode(configPath: string, id: string, dataDir: string): ChildProcess {
  const log = openSync(join(dataDir, `${id}.log`), 'a');
  return spawn(process.execPath, [DLM_BIN, 'serve', '--config', configPath, '--node', id], {
    stdio: ['ignore', log, log],
    env: nodeProcessEnv(),
  });
}

async function stopAll(
  children: readonly ChildProcess[],
  exited: readonly Promise<void>[],
): Promise<void> {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  const grace = new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
  await Promise.race([Promise.all(exited), grace]);
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

export function introduction(config: ClusterFileConfig, configPath: string): string {
  const first = config.nodes[0];
  const configFlag = configPath === DEFAULT_CONFIG_PATH ? '' : ` --config ${configPath}`;
  // tls.metrics 'tls' or 'mutual' serves the console and /metrics over HTTPS only.
  const scheme = config.tls !== null && config.tls.metrics !== 'plaintext' ? 'https' : 'http';
  return [
    `dlm: starting ${config.nodes.length} nodes; data and logs in ${config.dataDir}`,
    `clients connect to any of: ${config.nodes.map((node) => node.clientAddress).join(', ')}`,
    `from another terminal, take a lock:`,
    // examples/lock.ts is the plaintext walk-through of the API; under TLS the CLI,
    // which reads the config's tls section, takes its place.
    config.tls === null
      ? `  npm run lock -- --address ${first?.clientAddress ?? '127.0.0.1:7101'} inventory/42`
      : `  bin/dlm lock${configFlag} inventory/42 -- sleep 5`,
    `or run a command under a lock: bin/dlm lock${configFlag} inventory/42 -- CMD`,
    `see the cluster, change its members: bin/dlm status${configFlag}, bin/dlm --help`,
    `web console (live cluster, locks, sessions): ${config.nodes.map((node) => `${scheme}://${node.metricsAddress}/`).join('  ')}`,
    `metrics: ${config.nodes.map((node) => `${scheme}://${node.metricsAddress}/metrics`).join('  ')}`,
    'press Ctrl-C to stop',
    '',
  ].join('\n');
}

/**
 * How the status lines reach the metrics addresses: over HTTPS with the files a `dlm`
 * command presents when tls.metrics is tls or mutual (read once; a status line is a
 * local convenience, not worth a reload).
 */
function statusTls(config: ClusterFileConfig): MetricsClientTls | null {
  const section = config.tls;
  if (section === null || section.metrics === 'plaintext') return null;
  const files = clientTlsFiles(section);
  const material = {
    ca: readFileSync(files.caFile),
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
  };
  return { mode: section.metrics, material: () => material };
}

/** Reads role, term and commit index from the node's own /metrics endpoint. */
async function nodeStatus(
  id: string,
  metricsAddress: string,
  tls: MetricsClientTls | null,
): Promise<NodeStatusLine> {
  try {
    const { body } = await metricsGet(metricsAddress, '/metrics', 400, tls);
    const value = (name: string): number => {
      const line = body.split('\n').find((candidate) => candidate.startsWith(`${name}{`));
      return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const role = value('dlm_raft_is_leader') === 1 ? 'leader' : 'follower';
    return {
      id,
      text: `${id}  ${role.padEnd(8)}  term ${value('dlm_raft_term')}  commit ${value('dlm_raft_commit_index')}  applied ${value('dlm_raft_applied_index')}`,
    };
  } catch {
    return { id, text: `${id}  starting or down` };
  }
}

/** One line per node: redrawn in place on a terminal, printed on change otherwise. */
class StatusDisplay {
  private previous: string[] = [];

  constructor(
    private readonly io: CliIo,
    private readonly inPlace: boolean,
  ) {}

  show(lines: readonly NodeStatusLine[]): void {
    const texts = lines.map((line) => line.text);
    if (texts.join('\n') === this.previous.join('\n')) return;
    if (this.inPlace && this.previous.length > 0) this.io.out(`\x1b[${this.previous.length}A`);
    for (const text of texts) this.io.out(this.inPlace ? `\x1b[2K${text}\n` : `${text}\n`);
    this.previous = texts;
  }
}
