// A user's program: plain JavaScript (ESM) that imports the installed package's client.
// It prints one JSON line of what it saw, for test/package/package.test.ts to check.
import { DlmClient, DlmClientError, FenceGuard, StaleTokenError } from 'dlm/client';

const endpoints = process.argv[2]?.split(',') ?? [];
if (endpoints.length === 0) throw new Error('usage: node use-client.js HOST:PORT[,HOST:PORT…]');
const lock = 'package/test';

const client = new DlmClient({ endpoints });
const session = await client.openSession({ ttlMs: 10_000, clientName: 'package-test' });
const first = await session.acquire(lock, { waitMs: 5_000, owner: 'first' });
const whileHeld = await client.describe(lock);
const firstValid = await client.validateFence(lock, first.token);
await first.release();
const afterRelease = await client.describe(lock);
const second = await session.acquire(lock, { waitMs: 5_000, owner: 'second' });
const firstAfterSecond = await client.validateFence(lock, first.token);
// The resource side: after the second grant wrote, the first grant's token is refused.
const guard = new FenceGuard();
const fenceAdmitted = [guard.admit(lock, first.token), guard.admit(lock, second.token)];
let staleRefusal = null;
try {
  guard.check(lock, first.token);
} catch (error) {
  staleRefusal = error instanceof StaleTokenError ? error.message : String(error);
}
await second.release();
await session.close();
client.close();

console.log(
  JSON.stringify({
    sessionId: session.id,
    firstToken: first.token,
    secondToken: second.token,
    holdersWhileHeld: whileHeld.holders,
    holdersAfterRelease: afterRelease.holders,
    firstValidWhileHeld: firstValid.valid,
    firstValidAfterSecond: firstAfterSecond.valid,
    errorClassExported: typeof DlmClientError === 'function',
    fenceAdmitted,
    staleRefusal,
  }),
);
