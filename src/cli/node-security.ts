import { createPrivateKey, X509Certificate } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type ClusterFileConfig,
  ConfigError,
  loadTlsMaterial,
  nodeTlsFiles,
  type TlsFiles,
  type TlsMaterial,
} from '../config/index.ts';
import { AuthFailures } from '../node/auth-failures.ts';
import {
  CertificateStore,
  ReloadableServerCredentials,
  reloadableChannelCredentials,
} from '../transport/certificate-store.ts';
import {
  certificateNodeIds,
  checkServerNode,
  nodeCertificateUri,
} from '../transport/peer-identity.ts';
import type { NodeId } from '../util/ids.ts';
import { rateLimitedPerKey } from './rate-limit.ts';

/**
 * One node's TLS material and what is built from it: the credentials of its client
 * and peer ports (all reloadable, see CertificateStore) and the count of refused
 * authentications. Null material: plaintext, and nothing to reload.
 */
export class NodeSecurity {
  readonly authFailures: AuthFailures;

  private constructor(
    private readonly id: NodeId,
    private readonly files: TlsFiles | null,
    readonly store: CertificateStore | null,
    logger: Logger,
  ) {
    const logAuth = rateLimitedPerKey(AUTH_LOG_INTERVAL_MS);
    // Keyed by the peer's host, not its port: each refused handshake is a new connection
    // from a new port, and a client may open one per call.
    this.authFailures = new AuthFailures((fields, detail) =>
      logAuth(`${fields.port}/${fields.reason}/${withoutPort(fields.peer)}`, (suppressed) =>
        logger.warn({ ...fields, detail, suppressed }, 'refused an authentication'),
      ),
    );
  }

  /** Reads and checks the node's files; a problem stops start-up with the field named. */
  static async load(config: ClusterFileConfig, id: NodeId, logger: Logger): Promise<NodeSecurity> {
    if (config.tls === null) return new NodeSecurity(id, null, null, logger);
    const files = nodeTlsFiles(config.tls, id);
    const material = await readChecked(files, id);
    return new NodeSecurity(id, files, new CertificateStore(material), logger);
  }

  get tls(): boolean {
    return this.store !== null;
  }

  /** The client API's credentials: mutual TLS with any certificate of the CA, or plaintext. */
  apiCredentials(): grpc.ServerCredentials | undefined {
    return this.store === null ? undefined : new ReloadableServerCredentials(this.store);
  }

  /** The gRPC peer transport's: each link checks that the server it reaches is that node. */
  peerCredentials():
    | { server: grpc.ServerCredentials; client: (peer: NodeId) => grpc.ChannelCredentials }
    | undefined {
    const store = this.store;
    if (store === null) return undefined;
    return {
      server: new ReloadableServerCredentials(store),
      client: (peer) => reloadableChannelCredentials(store, checkServerNode(peer)),
    };
  }

  /**
   * Re-reads the files (SIGHUP). New connections use the new material, those up keep
   * theirs. Files that cannot be read, or a certificate that no longer names this node
   * or does not match its key, leave the old material in force and throw.
   */
  async reload(): Promise<{ serial: string } | null> {
    if (this.files === null || this.store === null) return null;
    const material = await readChecked(this.files, this.id);
    this.store.replace(material);
    return { serial: new X509Certificate(material.cert).serialNumber };
  }
}

/**
 * The files, and that they fit together: the certificate names this node (URI SAN
 * dlm-node://ID, else every peer refuses it), matches the key, and is signed by the CA.
 */
async function readChecked(files: TlsFiles, id: string): Promise<TlsMaterial> {
  const material = await loadTlsMaterial(files);
  const problems: string[] = [];
  try {
    const certificate = new X509Certificate(material.cert);
    const ids = certificateNodeIds({ subjectaltname: certificate.subjectAltName ?? '' });
    if (!ids.includes(id)) {
      problems.push(
        `tls.certFile: ${files.certFile} is not node ${id}'s certificate: it names ${ids.length === 0 ? 'no node' : `node ${ids.join(', ')}`} (expected the URI SAN ${nodeCertificateUri(id)}; dlm certs init makes such certificates), and peers refuse it`,
      );
    }
    if (!certificate.checkPrivateKey(createPrivateKey(material.key))) {
      problems.push(`tls.keyFile: ${files.keyFile} is not the key of ${files.certFile}`);
    }
    if (!certificate.verify(new X509Certificate(material.ca).publicKey)) {
      problems.push(`tls.certFile: ${files.certFile} is not signed by tls.caFile ${files.caFile}`);
    }
  } catch (error) {
    problems.push(`tls: cannot parse the PEM files: ${(error as Error).message}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return material;
}

const AUTH_LOG_INTERVAL_MS = 10_000;

/** `host:port` (IPv6 too, as Node and grpc-js write it) to `host`; a node id stays as it is. */
function withoutPort(peer: string): string {
  return peer.replace(/:\d+$/, '');
}

/**
 * What SIGHUP reloads, in the order added: the node's certificates, then the access
 * policy (serve.ts). Each hook's failure is logged and leaves what it reloads as it
 * was; the others still run. Reloads never overlap: a SIGHUP during one runs again
 * after it.
 */
export class ReloadHooks {
  private readonly hooks: { name: string; run: () => Promise<unknown> }[] = [];
  private running: Promise<void> = Promise.resolve();

  add(name: string, run: () => Promise<unknown>): void {
    this.hooks.push({ name, run });
  }

  reload(logger: Logger): Promise<void> {
    this.running = this.running.then(async () => {
      for (const hook of this.hooks) {
        try {
          const outcome = await hook.run();
          logger.info({ what: hook.name, outcome }, 'reloaded on SIGHUP');
        } catch (error) {
          logger.error(
            { what: hook.name, err: error },
            `SIGHUP: could not reload ${hook.name}; the old one stays in force`,
          );
        }
      }
    });
    return this.running;
  }

  /** Reloads on every SIGHUP until the returned function is called. */
  listen(logger: Logger): () => void {
    const onSignal = (): void => void this.reload(logger);
    process.on('SIGHUP', onSignal);
    return () => process.off('SIGHUP', onSignal);
  }
}
