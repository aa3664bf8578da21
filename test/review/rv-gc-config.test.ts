/** runtime.restoreCollectBytesMin through the config parser (review of 546167a; 0 turns it off). */
import { describe, expect, it } from 'vitest';
import { parseClusterConfig } from '../../src/config/index.ts';

const config = (runtime: Record<string, unknown>) => ({
  nodes: [1, 2, 3].map((n) => ({
    id: `n${n}`,
    peerAddress: `127.0.0.1:700${n}`,
    clientAddress: `127.0.0.1:710${n}`,
    metricsAddress: `127.0.0.1:910${n}`,
  })),
  dataDir: './data',
  runtime,
});
const parse = (runtime: Record<string, unknown>) => parseClusterConfig(config(runtime), '/etc/dlm');

describe('runtime.restoreCollectBytesMin', () => {
  it('defaults to 4 MiB', () => {
    expect(parse({}).runtime.restoreCollectBytesMin).toBe(4 * 2 ** 20);
  });
  it('accepts 0 (off), 1 and MAX_SAFE_INTEGER', () => {
    for (const good of [0, 1, Number.MAX_SAFE_INTEGER])
      expect(parse({ restoreCollectBytesMin: good }).runtime.restoreCollectBytesMin).toBe(good);
  });
  it('rejects -1, 1.5, a string, null, naming the field', () => {
    for (const bad of [-1, 1.5, '4MiB', null])
      expect(() => parse({ restoreCollectBytesMin: bad }), String(bad)).toThrow(
        /restoreCollectBytesMin/,
      );
  });
});
