export { crc32c } from './crc32.ts';
export { StorageCorruptionError } from './errors.ts';
export { decodeIndexKey, encodeIndexKey } from './keys.ts';
export type { Bootstrap } from './level-load.ts';
export { LevelStorage, type LevelStorageOptions } from './level-storage.ts';
export { MemoryWritableStorage } from './memory-writable-storage.ts';
export type {
  PersistBatch,
  StoredAddress,
  StoredIdentity,
  WritableStorage,
} from './writable-storage.ts';
