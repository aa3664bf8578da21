/**
 * Reads a node's Prometheus /metrics, for harnesses that must see what a node saw (the
 * no-bypass proofs read the per-peer message counters of src/node/peer-traffic.ts).
 */
export const SCRAPE_TIMEOUT_MS = 2_000;

/** The metrics text of one node; rejects with the URL and the cause when it cannot be read. */
export async function scrape(metricsAddress: string): Promise<string> {
  const url = `http://${metricsAddress}/metrics`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.text();
  } catch (error) {
    throw new Error(`could not read ${url}: ${(error as Error).message}`);
  }
}

/** Every sample of one metric, by the value of one of its labels. */
export function samplesByLabel(body: string, metric: string, label: string): Map<string, number> {
  const samples = new Map<string, number>();
  const labelPattern = new RegExp(`[{,]${label}="([^"]*)"`);
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const value = labelPattern.exec(line)?.[1];
    if (value !== undefined) samples.set(value, Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return samples;
}

/** The value of a metric without labels other than the node's, or undefined. */
export function sample(body: string, metric: string): number | undefined {
  const line = body
    .split('\n')
    .find((text) => text.startsWith(`${metric}{`) || text.startsWith(`${metric} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** dlm_peer_messages_received_total by sender. */
export function receivedFrom(body: string): Map<string, number> {
  return samplesByLabel(body, 'dlm_peer_messages_received_total', 'from');
}
