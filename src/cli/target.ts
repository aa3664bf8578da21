import * as grpc from '@grpc/grpc-js';
import {
  clientTlsFiles,
  loadClusterConfig,
  loadTlsMaterial,
  type TlsMaterial,
} from '../config/index.ts';
import type { AdminTarget } from './cli.ts';

/**
 * Where a command that talks to the cluster connects, and with which credentials:
 * --endpoints, else every clientAddress of --config; the --tls-* files, else (with
 * --config) the config's tls section, else plaintext.
 */
export async function resolveTarget(
  target: AdminTarget,
): Promise<{ endpoints: readonly string[]; credentials: grpc.ChannelCredentials }> {
  if (target.endpoints.length > 0) {
    const tls = target.tls === null ? null : await loadTlsMaterial(target.tls);
    return { endpoints: target.endpoints, credentials: channelCredentials(tls) };
  }
  const config = await loadClusterConfig(target.configPath);
  const files = target.tls ?? (config.tls === null ? null : clientTlsFiles(config.tls));
  const tls = files === null ? null : await loadTlsMaterial(files);
  return {
    endpoints: config.nodes.map((node) => node.clientAddress),
    credentials: channelCredentials(tls),
  };
}

/** A client's side of mutual TLS: trust the cluster's CA, and present our certificate. */
export function channelCredentials(tls: TlsMaterial | null): grpc.ChannelCredentials {
  return tls === null
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/** A server's side: present our certificate, and require one signed by the CA. */
export function serverCredentials(tls: TlsMaterial | null): grpc.ServerCredentials {
  return tls === null
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(
        tls.ca,
        [{ cert_chain: tls.cert, private_key: tls.key }],
        true,
      );
}
