import * as grpc from '@grpc/grpc-js';
import { bearerInterceptor } from '../client/bearer.ts';
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

/**
 * The bearer token of the `DLM_TOKEN` environment variable, for clusters with
 * auth.tokens: from the environment, not a flag, so it never shows in `ps`.
 */
export function tokenOption(): { token?: string } {
  const token = process.env.DLM_TOKEN;
  return token === undefined || token === '' ? {} : { token };
}

/**
 * grpc-js client options of the `dlm` commands: DLM_TOKEN sent when set, and message
 * sizes (requests are small; answers, a Status of many members, are read whole).
 */
export function clientOptions(): grpc.ClientOptions {
  const { token } = tokenOption();
  const sizes = {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  };
  return token === undefined ? sizes : { ...sizes, interceptors: [bearerInterceptor(token)] };
}
