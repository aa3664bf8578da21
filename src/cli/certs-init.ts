import { existsSync } from 'node:fs';
import { loadClusterConfig, type NodeConfig, parseAddress } from '../config/index.ts';
import { checkClientName, checkNodeId, hostSans, initCertificates } from './certs.ts';
import { type CertsInitCommand, type CliIo, exitOk, exitUsage } from './cli.ts';

/**
 * `dlm certs init`: which nodes and names, from the flags and the config, then the
 * files (certs.ts). A node of the config gets the hosts of all its addresses as SANs;
 * --san adds to every node; a node with none at all gets 127.0.0.1 and localhost.
 */
export async function runCertsInit(command: CertsInitCommand, io: CliIo): Promise<number> {
  const configured = await configuredNodes(command);
  const ids = command.nodes ?? configured.map((node) => node.id);
  if (ids.length === 0) {
    io.err(
      `dlm certs init: no nodes: name them with --nodes ID,... or give a config with nodes (--config; ${command.configPath} not found)\n`,
    );
    return exitUsage;
  }
  const problems = [
    ...ids.map(checkNodeId),
    ...command.clients.map(checkClientName),
    ...command.sans
      .filter((san) => !/^(DNS|IP|URI):./.test(san))
      .map((san) => `--san '${san}' must be DNS:NAME, IP:ADDRESS or URI:URI`),
  ].filter((problem): problem is string => problem !== null);
  if (problems.length > 0) {
    io.err(`dlm certs init: ${problems.join('; ')}\n`);
    return exitUsage;
  }
  const nodes = ids.map((id) => {
    const node = configured.find((each) => each.id === id);
    const sans = [...(node === undefined ? [] : hostSans(nodeHosts(node))), ...command.sans];
    return { id, sans: sans.length > 0 ? sans : ['IP:127.0.0.1', 'DNS:localhost'] };
  });
  const written = initCertificates({
    outDir: command.outDir,
    nodes,
    clients: command.clients,
    days: command.days,
  });
  for (const node of nodes)
    io.out(`node ${node.id}: dlm-node://${node.id} ${node.sans.join(' ')}\n`);
  io.out(
    `wrote ${written.length} files in ${command.outDir} (keys readable by their owner only)\n`,
  );
  return exitOk;
}

async function configuredNodes(command: CertsInitCommand): Promise<readonly NodeConfig[]> {
  if (!command.configGiven && !existsSync(command.configPath)) return [];
  return (await loadClusterConfig(command.configPath)).nodes;
}

function nodeHosts(node: NodeConfig): string[] {
  const hosts: string[] = [];
  for (const address of [
    node.peerAddress,
    node.clientAddress,
    node.metricsAddress,
    node.peerListenAddress,
    node.clientListenAddress,
  ]) {
    const parsed = parseAddress(address);
    if (parsed.ok) hosts.push(parsed.address.host);
  }
  return hosts;
}
