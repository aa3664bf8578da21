import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { runCli } from '../src/cli/cli.ts';

/**
 * A local cluster of 3 or 5 nodes on chosen ports and data dirs, for tests and demos:
 *
 *   npm run cluster -- [--nodes 3|5] [--base-port 7400] [--data-dir ./data/cluster-5]
 *
 * Node i (1-based) listens for peers on base+i, for clients on base+100+i and for
 * metrics on base+200+i. The generated config is written to <data-dir>/cluster.config.json
 * and run with `dlm cluster`, so Ctrl-C stops every node.
 */
interface Args {
  nodes: number;
  basePort: number;
  dataDir: string;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { nodes: 3, basePort: 7400, dataDir: '' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    const value = argv[++i];
    if (value === undefined) fail(`${flag} needs a value`);
    if (flag === '--nodes') args.nodes = Number(value);
    else if (flag === '--base-port') args.basePort = Number(value);
    else if (flag === '--data-dir') args.dataDir = value;
    else fail(`unknown option ${flag}`);
  }
  if (args.nodes !== 3 && args.nodes !== 5) fail(`--nodes must be 3 or 5, got ${args.nodes}`);
  if (!Number.isInteger(args.basePort) || args.basePort < 1024 || args.basePort + 300 > 65535) {
    fail(`--base-port must leave room for 300 ports above it (1024..65235), got ${args.basePort}`);
  }
  if (args.dataDir === '') args.dataDir = `./data/cluster-${args.nodes}`;
  return args;
}

function fail(message: string): never {
  process.stderr.write(`cluster: ${message}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const dataDir = resolve(args.dataDir);
mkdirSync(dataDir, { recursive: true });
const nodes = Array.from({ length: args.nodes }, (_, i) => ({
  id: `n${i + 1}`,
  peerAddress: `127.0.0.1:${args.basePort + i + 1}`,
  clientAddress: `127.0.0.1:${args.basePort + 100 + i + 1}`,
  metricsAddress: `127.0.0.1:${args.basePort + 200 + i + 1}`,
}));
const configPath = resolve(dataDir, 'cluster.config.json');
writeFileSync(
  configPath,
  `${JSON.stringify({ nodes, dataDir: '.', raft: { tickIntervalMs: 50 } }, null, 2)}\n`,
);
process.stdout.write(`config: ${configPath}\n`);
process.exitCode = await runCli(['cluster', '--config', configPath], {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});
