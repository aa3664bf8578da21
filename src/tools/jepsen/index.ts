/**
 * Network fault injection for Jepsen-style runs against real `dlm serve` processes.
 *
 *   const created = await NetnsNetwork.create({ nodeIds: ['n1', 'n2', 'n3'] });
 *   if (!created.ok) report(`skipped: ${created.skipped}`);   // never count it as passed
 *   const mesh = await ProxyMesh.start({ network, peerPort: PEER_PORT, seed });   // optional
 *   const nodes = netnsNodes(network, mesh);        // the config's `nodes`
 *   network.spawn(id, process.execPath, [bin/dlm, 'serve', …]);   // or NetnsCluster
 *   await network.apply(planPartition(shape, prng, ids, leader).grudge);  … heal()
 *   await mesh.set('n1', 'n2', { delayMs: 100, jitterMs: 50 });   … setAll({})
 *   await mesh.close(); await network.close();
 */
export {
  between,
  bridge,
  bridgeNode,
  type Cut,
  cutsText,
  type Grudge,
  isolate,
  majoritiesRing,
  oneWay,
  partition,
  reachable,
  union,
} from './grudge.ts';
export * from './linearizability/index.ts';
export { CLIENT, type NetnsCreateResult, NetnsNetwork, type NetnsOptions } from './netns.ts';
export {
  CLIENT_PORT,
  METRICS_PORT,
  NetnsCluster,
  type NetnsClusterOptions,
  netnsNodes,
  PEER_PORT,
} from './netns-cluster.ts';
export {
  PARTITION_SHAPES,
  type PartitionPlan,
  type PartitionShape,
  planPartition,
  shapesFor,
} from './partition-plan.ts';
export {
  checkedFaults,
  type LinkFaults,
  LinkProxy,
  type LinkProxyOptions,
  type LinkStats,
} from './proxy.ts';
export { ProxyMesh, type ProxyMeshOptions, VIRTUAL_SUBNET } from './proxy-mesh.ts';
export { receivedFrom, sample, samplesByLabel, scrape } from './scrape.ts';
