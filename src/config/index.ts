export { type AddressResult, type HostPort, parseAddress } from './address.ts';
export {
  type AuthConfig,
  type IdentityLimits,
  PERMISSIONS,
  type Permission,
  type RoleGrant,
  type TokenEntry,
} from './auth.ts';
export { ConfigError } from './errors.ts';
export { CONFIG_FILE_BYTES_MAX, loadClusterConfig } from './load.ts';
export { NODE_ID_PATTERN, NODES_MAX } from './nodes.ts';
export { CLUSTER_ID_PATTERN, findNode, nodeDataDir, parseClusterConfig } from './parse.ts';
export { TIMER_MS_MAX } from './sections.ts';
export { lockTimingProblems } from './timing.ts';
export {
  clientTlsFiles,
  loadTlsMaterial,
  type MetricsTls,
  NODE_PLACEHOLDER,
  nodeTlsFiles,
  type TlsFiles,
  type TlsMaterial,
  type TlsSection,
} from './tls.ts';
export {
  type ClusterConfigInput,
  type ClusterFileConfig,
  DEFAULT_PEER_TRANSPORT,
  DEFAULT_RUNTIME_CONFIG,
  DEFAULT_TICK_INTERVAL_MS,
  type NodeConfig,
  type NodeConfigInput,
  PEER_TRANSPORT_KINDS,
  type PeerTransportKind,
  type RaftConfig,
  type RuntimeConfig,
} from './types.ts';
