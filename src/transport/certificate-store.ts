import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type {
  CaCertificateUpdateListener,
  CertificateProvider,
  IdentityCertificateUpdateListener,
} from '@grpc/grpc-js/build/src/certificate-provider.js';
import type { TlsMaterial } from '../config/index.ts';

/**
 * A node's TLS material that can be replaced while it runs (SIGHUP): every server and
 * client built from the store takes the new CA, certificate and key for the connections
 * it makes or accepts from then on. Connections already up keep theirs, so a reload
 * drops nothing; each side checks the other's certificate when a connection opens.
 */
export class CertificateStore implements CertificateProvider {
  private material: TlsMaterial;
  private readonly listeners = new Set<(material: TlsMaterial) => void>();
  private readonly caListeners = new Set<CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<IdentityCertificateUpdateListener>();

  constructor(material: TlsMaterial) {
    this.material = material;
  }

  get current(): TlsMaterial {
    return this.material;
  }

  replace(material: TlsMaterial): void {
    this.material = material;
    for (const listener of this.listeners) listener(material);
    for (const listener of this.caListeners) listener({ caCertificate: material.ca });
    for (const listener of this.identityListeners) {
      listener({ certificate: material.cert, privateKey: material.key });
    }
  }

  /** Called on every replace; returns how to stop. */
  subscribe(listener: (material: TlsMaterial) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // grpc-js's CertificateProvider: a listener hears the current material at once.
  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    listener({ caCertificate: this.material.ca });
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    listener({ certificate: this.material.cert, privateKey: this.material.key });
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

/**
 * A gRPC server's side of mutual TLS from a store: present the store's certificate and
 * require one signed by its CA. grpc-js hands each new secure context to its listening
 * servers (setSecureContext). Its own certificate-provider credentials are not used:
 * they read the material only after the first listener binds, so that listener would
 * drop every connection until the first reload.
 */
export class ReloadableServerCredentials extends grpc.ServerCredentials {
  constructor(store: CertificateStore) {
    super({ requestCert: true, rejectUnauthorized: true }, secureContextOptions(store.current));
    store.subscribe((material) => this.updateSecureContextOptions(secureContextOptions(material)));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * A gRPC client's side: trust the store's CA and present its certificate. `checkServer`
 * replaces Node's host-name check (it should run it itself, see peer-identity.ts).
 */
export function reloadableChannelCredentials(
  store: CertificateStore,
  checkServer?: (host: string, certificate: PeerCertificate) => Error | undefined,
): grpc.ChannelCredentials {
  return grpc.experimental.createCertificateProviderChannelCredentials(
    store,
    store,
    checkServer === undefined ? {} : { checkServerIdentity: checkServer },
  );
}

function secureContextOptions(material: TlsMaterial): {
  ca: Buffer;
  cert: Buffer[];
  key: Buffer[];
} {
  return { ca: material.ca, cert: [material.cert], key: [material.key] };
}
