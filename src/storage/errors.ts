/**
 * Stored data failed verification: a checksum mismatch, an undecodable value, a value
 * stored under the wrong key, or records that contradict each other. The node must
 * stop: serving from a log it cannot trust could grant a lock twice. The message names
 * the database path, the sublevel and the key so an operator can find the damage.
 */
export class StorageCorruptionError extends Error {
  override readonly name = 'StorageCorruptionError';

  constructor(
    /** The database directory. */
    readonly path: string,
    /** `log`, `meta` or `snapshot`. */
    readonly sublevel: string,
    /** Which record, e.g. `index 42` or `key hardState`. */
    readonly where: string,
    readonly reason: string,
  ) {
    super(`storage corrupt: ${path} ${sublevel} ${where}: ${reason}`);
  }
}

/**
 * A stored value that cannot be trusted, thrown by the codec, which does not know where
 * the value came from. The storage layer rethrows it as a StorageCorruptionError.
 */
export class CorruptValueError extends Error {
  override readonly name = 'CorruptValueError';
}
