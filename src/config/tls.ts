import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import {
  describeValue,
  fieldPath,
  type JsonObject,
  ownField,
  type Problems,
  readObject,
  readString,
  rejectUnknownFields,
} from './fields.ts';

/**
 * Mutual TLS for every gRPC endpoint of the cluster: the peer (Raft) traffic and the
 * public API. Each side presents a certificate signed by `caFile` and checks the
 * other's; a client without one is refused at the handshake. Paths are resolved
 * against the config file's folder, like `dataDir`.
 */
export interface TlsFiles {
  /** PEM: the certificate authority that signed every node's and client's certificate. */
  readonly caFile: string;
  /**
   * PEM: this side's certificate chain; its names must match the addresses others dial,
   * and a node's must name its id (URI SAN dlm-node://ID, see `dlm certs init`).
   * `{node}` in the path stands for the node's id, so one config serves every node.
   */
  readonly certFile: string;
  /** PEM: the private key of certFile; `{node}` as in certFile. */
  readonly keyFile: string;
}

/** The whole `tls` section: the node's files, and what the CLI and the metrics port do. */
export interface TlsSection extends TlsFiles {
  /**
   * What `dlm` commands run with --config present to the cluster; null: certFile and
   * keyFile (which then must not hold `{node}`).
   */
  readonly clientCertFile: string | null;
  readonly clientKeyFile: string | null;
  /**
   * The metrics port: `plaintext` (as without tls), `tls` (HTTPS with the node's
   * certificate) or `mutual` (HTTPS, and the scraper must present a certificate of caFile).
   */
  readonly metrics: MetricsTls;
}

export const METRICS_TLS_MODES = ['plaintext', 'tls', 'mutual'] as const;
export type MetricsTls = (typeof METRICS_TLS_MODES)[number];

/** Stands for the node's id in tls.certFile and tls.keyFile. */
export const NODE_PLACEHOLDER = '{node}';

/** The node's own files: `{node}` replaced by its id. */
export function nodeTlsFiles(section: TlsFiles, id: string): TlsFiles {
  return {
    caFile: section.caFile,
    certFile: section.certFile.replaceAll(NODE_PLACEHOLDER, id),
    keyFile: section.keyFile.replaceAll(NODE_PLACEHOLDER, id),
  };
}

/** What a `dlm` command presents when it takes the config's tls section. */
export function clientTlsFiles(section: TlsSection): TlsFiles {
  const files = {
    caFile: section.caFile,
    certFile: section.clientCertFile ?? section.certFile,
    keyFile: section.clientKeyFile ?? section.keyFile,
  };
  if (files.certFile.includes(NODE_PLACEHOLDER) || files.keyFile.includes(NODE_PLACEHOLDER)) {
    throw new ConfigError([
      `tls: certFile and keyFile name a file per node (${NODE_PLACEHOLDER}); set tls.clientCertFile and tls.clientKeyFile for dlm commands, or pass --tls-ca, --tls-cert and --tls-key`,
    ]);
  }
  return files;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

const TLS_FIELDS: readonly (keyof TlsSection)[] = [
  'caFile',
  'certFile',
  'keyFile',
  'clientCertFile',
  'clientKeyFile',
  'metrics',
];

/** The `tls` section: absent means plaintext; present, all three files are required. */
export function readTlsSection(
  problems: Problems,
  value: unknown,
  baseDir: string,
): TlsSection | null {
  if (value === undefined) return null;
  const section = readObject(problems, 'tls', value);
  if (section === undefined) return null;
  rejectUnknownFields(problems, 'tls', section, TLS_FIELDS);
  const path = (key: keyof TlsSection): string => readPath(problems, section, key, baseDir);
  const optionalPath = (key: keyof TlsSection): string | null =>
    ownField(section, key) === undefined ? null : path(key);
  const clientCertFile = optionalPath('clientCertFile');
  const clientKeyFile = optionalPath('clientKeyFile');
  if ((clientCertFile === null) !== (clientKeyFile === null)) {
    problems.add('tls', 'clientCertFile and clientKeyFile go together: set both or neither');
  }
  return {
    caFile: path('caFile'),
    certFile: path('certFile'),
    keyFile: path('keyFile'),
    clientCertFile,
    clientKeyFile,
    metrics: readMetricsTls(problems, ownField(section, 'metrics')),
  };
}

function readMetricsTls(problems: Problems, value: unknown): MetricsTls {
  if (value === undefined) return 'plaintext';
  const mode = METRICS_TLS_MODES.find((each) => each === value);
  if (mode === undefined) {
    problems.add(
      'tls.metrics',
      `expected one of ${METRICS_TLS_MODES.join(', ')}, got ${describeValue(value)}`,
    );
    return 'plaintext';
  }
  return mode;
}

function readPath(problems: Problems, section: JsonObject, key: string, baseDir: string): string {
  const where = fieldPath('tls', key);
  const text = readString(problems, where, ownField(section, key));
  if (text === '' || text?.includes('\0')) {
    problems.add(where, `expected a non-empty path, got ${describeValue(text)}`);
    return '';
  }
  return text === undefined ? '' : resolve(baseDir, text);
}

/** Reads the three PEM files; a file that cannot be read is a ConfigError naming its field. */
export async function loadTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  const problems: string[] = [];
  const read = async (key: keyof TlsFiles): Promise<Buffer> => {
    try {
      const content = await readFile(files[key]);
      if (!content.includes('-----BEGIN ')) {
        problems.push(`tls.${key}: ${files[key]} is not a PEM file`);
      }
      return content;
    } catch (error) {
      problems.push(`tls.${key}: cannot read ${files[key]}: ${(error as Error).message}`);
      return Buffer.alloc(0);
    }
  };
  const [ca, cert, key] = await Promise.all([read('caFile'), read('certFile'), read('keyFile')]);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ca, cert, key };
}
