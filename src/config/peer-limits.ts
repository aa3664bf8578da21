import type { Problems } from './fields.ts';
import type { RaftConfig, RuntimeConfig } from './types.ts';

/**
 * What an InstallSnapshot message carries besides its chunk (term, metadata with the
 * membership of up to NODES_MAX nodes, offsets), with room to spare: 2,449 bytes
 * measured for 32 voters of 66-character ids (msgpack, as the TCP transport packs it).
 */
export const PEER_FRAME_HEADROOM_BYTES = 64 * 1024;

/** The smallest runtime.clientRequestBytesMax: room for the largest KeepAlive batch. */
export const CLIENT_REQUEST_BYTES_MIN = 256 * 1024;

/**
 * The TCP peer transport's limits that depend on other sections. A frame smaller than one
 * snapshot chunk plus its message would drop every InstallSnapshot at its sender, so a
 * follower that needs a snapshot would never catch up; too few inbound connections
 * would leave peers of a full cluster refused while they reconnect.
 */
export function checkPeerLimits(
  problems: Problems,
  raft: RaftConfig,
  runtime: RuntimeConfig,
  nodeCount: number,
): void {
  const frameBytesMin = raft.snapshotChunkBytesMax + PEER_FRAME_HEADROOM_BYTES;
  if (runtime.peerFrameBytesMax < frameBytesMin) {
    problems.add(
      'runtime.peerFrameBytesMax',
      `${runtime.peerFrameBytesMax} bytes cannot carry one snapshot chunk: raft.snapshotChunkBytesMax + ${PEER_FRAME_HEADROOM_BYTES} bytes for the rest of the message = ${raft.snapshotChunkBytesMax} + ${PEER_FRAME_HEADROOM_BYTES} = ${frameBytesMin} bytes is the minimum (a smaller frame drops every InstallSnapshot, so a follower that needs one never catches up)`,
    );
  }
  // Each peer keeps one connection here, two while it reconnects.
  const connectionsMin = 2 * nodeCount;
  if (runtime.peerInboundConnectionsMax < connectionsMin) {
    problems.add(
      'runtime.peerInboundConnectionsMax',
      `${runtime.peerInboundConnectionsMax} is less than 2 × the ${nodeCount} nodes = ${connectionsMin}: each peer holds one connection, two while it reconnects`,
    );
  }
}

/** gRPC message sizes: a peer message must carry a snapshot chunk, a request the largest KeepAlive. */
export function checkMessageLimits(
  problems: Problems,
  raft: RaftConfig,
  runtime: RuntimeConfig,
): void {
  const frameBytesMin = raft.snapshotChunkBytesMax + PEER_FRAME_HEADROOM_BYTES;
  if (runtime.peerMessageBytesMax < frameBytesMin) {
    problems.add(
      'runtime.peerMessageBytesMax',
      `${runtime.peerMessageBytesMax} bytes cannot carry one snapshot chunk: at least ${frameBytesMin} bytes (raft.snapshotChunkBytesMax + ${PEER_FRAME_HEADROOM_BYTES})`,
    );
  }
  if (runtime.clientRequestBytesMax < CLIENT_REQUEST_BYTES_MIN) {
    problems.add(
      'runtime.clientRequestBytesMax',
      `${runtime.clientRequestBytesMax} bytes is below ${CLIENT_REQUEST_BYTES_MIN}: a KeepAlive of 10,000 session ids (its ceiling) takes about 90 kB`,
    );
  }
}
