/**
 * "host:port" (or "[v6]:port") as the config writes an address, split for node:net,
 * node:http and node:https, which take the two apart.
 */
export function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return {
    host: address.slice(0, colon).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(colon + 1)),
  };
}
