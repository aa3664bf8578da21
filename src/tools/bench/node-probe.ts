import { readFileSync } from 'node:fs';
import { processStatus } from './proc-cpu.ts';

/**
 * What the scale cells read about a server from outside: its memory (/proc/PID/status),
 * its Prometheus metrics (scraped over HTTP), and the whole machine's CPU (/proc/stat).
 * Linux only, like proc-cpu.ts.
 */

export interface MemoryMb {
  /** Resident set size now. */
  readonly rssMb: number;
  /** The highest RSS the process reached (VmHWM). */
  readonly peakRssMb: number;
}

/** A process's resident memory, in MB (MiB); throws naming the pid if it is gone. */
export function processMemoryMb(pid: number): MemoryMb {
  const status = processStatus(pid);
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match === null ? Number.NaN : Number(match[1]);
  };
  return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
}

const SCRAPE_TIMEOUT_MS = 5_000;

/** Prometheus samples by series (`name{labels}` as written), value parsed. */
export type Samples = ReadonlyMap<string, number>;

/** A node that just started serves its API before its metrics: a few tries, briefly apart. */
const SCRAPE_TRIES = 20;
const SCRAPE_RETRY_MS = 250;

/** GETs http://address/metrics and parses the text format; rejects naming the address. */
export async function scrapeMetrics(address: string): Promise<Samples> {
  let lastError: unknown;
  for (let attempt = 0; attempt < SCRAPE_TRIES; attempt++) {
    try {
      const answer = await fetch(`http://${address}/metrics`, {
        signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS),
      });
      return parseMetrics(await answer.text());
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, SCRAPE_RETRY_MS));
    }
  }
  const why = lastError instanceof Error ? lastError.message : String(lastError);
  throw new Error(`cannot scrape metrics at ${address} (${SCRAPE_TRIES} tries): ${why}`);
}

export function parseMetrics(text: string): Samples {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (space < 0) continue;
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The sum of every series of metric `name` whose labels include `labelText` (e.g. 'le="0.01"'). */
export function metricSum(samples: Samples, name: string, labelText = ''): number {
  let sum = 0;
  let found = false;
  for (const [series, value] of samples) {
    const brace = series.indexOf('{');
    const seriesName = brace < 0 ? series : series.slice(0, brace);
    if (seriesName !== name || !series.includes(labelText)) continue;
    sum += value;
    found = true;
  }
  return found ? sum : Number.NaN;
}

/** Synced writes (a whole Ready each) between two scrapes of one node. */
export interface FsyncDelta {
  readonly count: number;
  readonly meanMs: number;
  /** The upper bound of the histogram bucket holding the 99th percentile; NaN when none. */
  readonly p99UpperMs: number;
}

const FSYNC = 'dlm_storage_fsync_seconds';

export function fsyncDelta(before: Samples, after: Samples): FsyncDelta {
  const delta = (name: string, label = '') =>
    metricSum(after, name, label) - metricSum(before, name, label);
  const count = delta(`${FSYNC}_count`);
  const meanMs = count > 0 ? (delta(`${FSYNC}_sum`) / count) * 1000 : Number.NaN;
  const bounds = [...after.keys()]
    .filter((series) => series.startsWith(`${FSYNC}_bucket{`))
    .map((series) => /le="([^"]+)"/.exec(series)?.[1])
    .filter((le): le is string => le !== undefined && le !== '+Inf')
    .sort((a, b) => Number(a) - Number(b));
  let p99UpperMs = Number.NaN;
  for (const le of bounds) {
    if (delta(`${FSYNC}_bucket`, `le="${le}"`) >= count * 0.99) {
      p99UpperMs = Number(le) * 1000;
      break;
    }
  }
  return { count, meanMs, p99UpperMs };
}

/** Busy and total jiffies of the whole machine so far (/proc/stat's cpu line). */
export interface HostCpu {
  readonly busy: number;
  readonly total: number;
}

export function hostCpu(): HostCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** Share (0..1) of the machine's CPU time that was busy between two readings. */
export function hostBusyShare(before: HostCpu, after: HostCpu): number {
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : Number.NaN;
}
