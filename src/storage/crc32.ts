/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum LevelDB itself
 * uses for its blocks. Castagnoli detects more error patterns than the IEEE polynomial
 * at the same cost. Byte-at-a-time with a 256-entry table: values are small (log
 * entries, hard state), so this is not a bottleneck next to an fsync.
 */
const CASTAGNOLI_REFLECTED = 0x82f63b78;

const TABLE: Uint32Array = buildTable(CASTAGNOLI_REFLECTED);

function buildTable(polynomial: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ polynomial : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
}

/**
 * The CRC-32C of `bytes`, as an unsigned 32-bit number. Pass a previous result as
 * `crc` to continue a checksum over data that arrives in pieces.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let state = ~crc >>> 0;
  for (let position = 0; position < bytes.length; position++) {
    // Both indexes are in range by construction; `?? 0` only satisfies noUncheckedIndexedAccess.
    const tableIndex = (state ^ (bytes[position] ?? 0)) & 0xff;
    state = (TABLE[tableIndex] ?? 0) ^ (state >>> 8);
  }
  return ~state >>> 0;
}
