import { isIPv4, isIPv6 } from 'node:net';

/** A parsed "host:port". An IPv6 host is returned without its brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type AddressResult =
  | { readonly ok: true; readonly address: HostPort }
  | { readonly ok: false; readonly problem: string };

/** Longer than any DNS name plus a port; also keeps the pattern below cheap. */
const ADDRESS_CHARS_MAX = 300;
const ADDRESS_PATTERN = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/;
const HOSTNAME_PATTERN =
  /^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const HOSTNAME_CHARS_MAX = 253;
const PORT_MIN = 1;
const PORT_MAX = 65_535;

/** Port 0 is refused: the other nodes and clients must know where to connect. */
export function parseAddress(text: string): AddressResult {
  const match = text.length <= ADDRESS_CHARS_MAX ? ADDRESS_PATTERN.exec(text) : null;
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || host === '') {
    const hint =
      text.split(':').length > 2 && !text.startsWith('[') ? ' (IPv6 hosts go in brackets)' : '';
    return { ok: false, problem: `expected "host:port"${hint}, got ${JSON.stringify(text)}` };
  }
  const port = Number(match[3]);
  if (port < PORT_MIN || port > PORT_MAX) {
    return { ok: false, problem: `port ${match[3]} out of range ${PORT_MIN}..${PORT_MAX}` };
  }
  const hostProblem = match[1] === undefined ? hostnameProblem(host) : ipv6Problem(host);
  if (hostProblem !== undefined) return { ok: false, problem: hostProblem };
  return { ok: true, address: { host, port } };
}

function hostnameProblem(host: string): string | undefined {
  const valid =
    host.length <= HOSTNAME_CHARS_MAX &&
    HOSTNAME_PATTERN.test(host) &&
    // All digits and dots reads as an IPv4 address, so it must be a valid one.
    (!/^[\d.]+$/.test(host) || isIPv4(host));
  return valid ? undefined : `invalid host ${JSON.stringify(host)}`;
}

function ipv6Problem(host: string): string | undefined {
  return isIPv6(host) ? undefined : `invalid IPv6 host ${JSON.stringify(`[${host}]`)}`;
}

/**
 * One key per endpoint whatever the case of its host, so a collision is found however
 * the host was written. Different names for one host (localhost, 127.0.0.1) are not
 * resolved: that would need DNS at start-up.
 */
export function addressKey(address: HostPort): string {
  return `${address.host.toLowerCase()}:${address.port}`;
}
