/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum LevelDB itself
 * uses for its blocks. Castagnoli detects more error patterns than the IEEE polynomial
 * at the same cost. Slicing-by-8 (eight 256-entry tables, eight bytes a step): a
 * snapshot record reaches 15 MB (a full dedupe window), and byte-at-a-time took 150 ms
 * and more over it, on the event loop, while every call of the node waited.
 */
const CASTAGNOLI_REFLECTED = 0x82f63b78;
const SLICES = 8;

/** TABLES[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLES: Uint32Array = buildTables(CASTAGNOLI_REFLECTED);

function buildTables(polynomial: number): Uint32Array {
  const tables = new Uint32Array(256 * SLICES);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ polynomial : crc >>> 1;
    tables[byte] = crc >>> 0;
  }
  for (let byte = 0; byte < 256; byte++) {
    let crc = tables[byte] as number;
    for (let k = 1; k < SLICES; k++) {
      crc = (tables[crc & 0xff] as number) ^ (crc >>> 8);
      tables[k * 256 + byte] = crc >>> 0;
    }
  }
  return tables;
}

/**
 * The CRC-32C of `bytes`, as an unsigned 32-bit number. Pass a previous result as
 * `crc` to continue a checksum over data that arrives in pieces.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const t = TABLES;
  let state = ~crc >>> 0;
  let position = 0;
  const end8 = bytes.length - (bytes.length % SLICES);
  // Indexes are in range by construction; `as number` only satisfies noUncheckedIndexedAccess.
  for (; position < end8; position += SLICES) {
    const low =
      (state ^
        ((bytes[position] as number) |
          ((bytes[position + 1] as number) << 8) |
          ((bytes[position + 2] as number) << 16) |
          ((bytes[position + 3] as number) << 24))) >>>
      0;
    state =
      (t[7 * 256 + (low & 0xff)] as number) ^
      (t[6 * 256 + ((low >>> 8) & 0xff)] as number) ^
      (t[5 * 256 + ((low >>> 16) & 0xff)] as number) ^
      (t[4 * 256 + (low >>> 24)] as number) ^
      (t[3 * 256 + (bytes[position + 4] as number)] as number) ^
      (t[2 * 256 + (bytes[position + 5] as number)] as number) ^
      (t[256 + (bytes[position + 6] as number)] as number) ^
      (t[bytes[position + 7] as number] as number);
  }
  for (; position < bytes.length; position++) {
    state = (t[(state ^ (bytes[position] as number)) & 0xff] as number) ^ (state >>> 8);
  }
  return ~state >>> 0;
}
