// The resource side of fencing in PostgreSQL: each row keeps the highest fencing token
// that wrote it, and a write carries its token and changes the row only if no later
// grant's token has written it. The check and the write are one statement, so nothing
// can come between them: a holder that lost its lock while paused and writes afterwards
// changes nothing, however late it comes back.
//
// Tokens are uint64 (decimal strings from dlm): numeric(20, 0) holds every one, where
// bigint stops at 2^63 - 1. One grant's holder may write many times under its token, so
// a write needs `fence <= token` (equal is the same grant); tokens of one lock strictly
// increase from grant to grant, so an older grant's token is always below.

/** Creates the table if it is not there. */
export async function createTable(db) {
  await db.query(`
    CREATE TABLE IF NOT EXISTS fenced_values (
      key   text PRIMARY KEY,
      value text NOT NULL,
      fence numeric(20, 0) NOT NULL
    )`);
}

/**
 * Writes `value` to `key` under fencing token `token`. Resolves with { applied: true }
 * when the row took it (created, or its fence was at most `token`), else with
 * { applied: false, fence } where fence is the later token the row holds.
 *
 * The first write to a key inserts it; every other is, in effect,
 *   UPDATE fenced_values SET value = $1, fence = $2 WHERE key = $3 AND fence <= $2
 */
export async function fencedWrite(db, key, value, token) {
  const result = await db.query(
    `INSERT INTO fenced_values AS row (key, value, fence) VALUES ($3, $1, $2)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, fence = EXCLUDED.fence
       WHERE row.fence <= EXCLUDED.fence`,
    [value, token, key],
  );
  if (result.rowCount === 1) return { applied: true };
  const row = await readRow(db, key);
  return { applied: false, fence: row?.fence ?? null };
}

/** The row of `key` ({ value, fence } with fence as a decimal string), or null. */
export async function readRow(db, key) {
  const result = await db.query(
    'SELECT value, fence::text AS fence FROM fenced_values WHERE key = $1',
    [key],
  );
  return result.rows[0] ?? null;
}
