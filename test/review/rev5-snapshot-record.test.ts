/**
 * rev5 (review of the mem branch): the snapshot record framed by hand is msgpackr's
 * framing at every bin size boundary (the codec's own property test stops at 256 bytes
 * of data), with indexes and terms past 2^32, whole or given in pieces.
 */
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { Snapshot } from '../../src/raft/types.ts';
import {
  decodeSnapshot,
  encodeSnapshot,
  encodeSnapshotPartsInSlices,
  FORMAT_VERSION,
} from '../../src/storage/codec.ts';
import { crc32c } from '../../src/storage/crc32.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';

const pinned = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function expected(snapshot: Snapshot): Buffer {
  const { index, term: t, config } = snapshot.metadata;
  const payload = pinned.pack([index, t, config.voters, config.learners, snapshot.data]);
  const out = new Uint8Array(5 + payload.byteLength);
  out[4] = FORMAT_VERSION;
  out.set(payload, 5);
  new DataView(out.buffer).setUint32(0, crc32c(out.subarray(4)));
  return Buffer.from(out);
}

describe('rev5: snapshot record framed by hand', () => {
  it.each([0, 1, 255, 256, 65_535, 65_536, (1 << 20) + 7, 3 * (1 << 20) - 1])(
    '%i data bytes',
    async (size) => {
      const data = new Uint8Array(size).map((_, i) => (i * 31 + 7) & 0xff);
      const snapshot: Snapshot = {
        metadata: {
          index: logIndex(2 ** 32 + 5),
          term: term(2 ** 40 + 1),
          config: { voters: [nodeId('n1'), nodeId('nödé-2')], learners: [nodeId('𝄞')] },
        },
        data,
      };
      const want = expected(snapshot);
      expect(Buffer.from(encodeSnapshot(snapshot)).equals(want)).toBe(true);
      const cut1 = Math.floor(size / 3);
      const cut2 = Math.floor((2 * size) / 3);
      const parts = [data.subarray(0, cut1), data.subarray(cut1, cut2), data.subarray(cut2)];
      const value = await encodeSnapshotPartsInSlices(snapshot.metadata, parts, async () => {});
      expect(Buffer.from(value).equals(want)).toBe(true);
      expect(Buffer.from(decodeSnapshot(value).data).equals(Buffer.from(data))).toBe(true);
    },
  );
});
