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
  /** PEM: this side's certificate chain; its names must match the addresses others dial. */
  readonly certFile: string;
  /** PEM: the private key of certFile. */
  readonly keyFile: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

const TLS_FIELDS: readonly (keyof TlsFiles)[] = ['caFile', 'certFile', 'keyFile'];

/** The `tls` section: absent means plaintext; present, all three files are required. */
export function readTlsSection(
  problems: Problems,
  value: unknown,
  baseDir: string,
): TlsFiles | null {
  if (value === undefined) return null;
  const section = readObject(problems, 'tls', value);
  if (section === undefined) return null;
  rejectUnknownFields(problems, 'tls', section, TLS_FIELDS);
  const path = (key: keyof TlsFiles): string => readPath(problems, section, key, baseDir);
  return { caFile: path('caFile'), certFile: path('certFile'), keyFile: path('keyFile') };
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
