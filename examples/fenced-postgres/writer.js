#!/usr/bin/env node
// A lock holder that writes to PostgreSQL under its fencing token, driven line by line
// on stdin so that a test (or you, in a terminal) decides when it checks its lease and
// when it writes:
//
//   node examples/fenced-postgres/writer.js --endpoints 127.0.0.1:7101,127.0.0.1:7102 \
//     --database postgres://user@127.0.0.1:5432/db --key account/7 --name A
//
// It opens a session, takes the lock fenced/<key> (waiting up to --wait-ms) and prints
// one JSON line per event on stdout:
//   {"event":"acquired","token":"…"}     the lock is held under that token
//   check          -> {"event":"checked","alive":true|false}   is the lease still good?
//   write VALUE    -> {"event":"written"|"refused","value":…,"token":…,"fence":…}
//   exit           -> releases (if it still can), closes the session, exits
//
// `write` does not look at the lease again: a real holder checks, then writes, and a
// pause (GC, SIGSTOP, a slow disk) can fall between the two. The fenced write is what
// keeps that late write from landing; see README.md beside this file.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { DlmClient } from 'dlm/client';
import pg from 'pg';
import { createTable, fencedWrite } from './store.js';

const { values: args } = parseArgs({
  options: {
    endpoints: { type: 'string' },
    database: { type: 'string' },
    key: { type: 'string' },
    name: { type: 'string', default: 'writer' },
    'ttl-ms': { type: 'string', default: '10000' },
    'wait-ms': { type: 'string', default: '30000' },
  },
});
for (const required of ['endpoints', 'database', 'key']) {
  if (args[required] === undefined) {
    process.stderr.write(`writer.js: --${required} is required (see the comment at the top)\n`);
    process.exit(2);
  }
}

const print = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const db = new pg.Pool({ connectionString: args.database, max: 1 });
await createTable(db);

const client = new DlmClient({ endpoints: args.endpoints.split(',') });
const session = await client.openSession({
  ttlMs: Number(args['ttl-ms']),
  clientName: args.name,
});
const lock = await session.acquire(`fenced/${args.key}`, {
  waitMs: Number(args['wait-ms']),
  owner: args.name,
});
print({ event: 'acquired', token: lock.token, sessionId: session.id });

const commands = createInterface({ input: process.stdin });
for await (const line of commands) {
  const [command, ...rest] = line.trim().split(' ');
  if (command === 'check') {
    print({ event: 'checked', alive: session.alive });
  } else if (command === 'write') {
    const value = rest.join(' ');
    const outcome = await fencedWrite(db, args.key, value, lock.token);
    print({
      event: outcome.applied ? 'written' : 'refused',
      value,
      token: lock.token,
      ...(outcome.applied ? {} : { fence: outcome.fence }),
    });
  } else if (command === 'exit') {
    break;
  } else if (command !== '') {
    print({ event: 'error', message: `unknown command ${JSON.stringify(command)}` });
  }
}

commands.close();
process.stdin.destroy(); // else the open stdin keeps the process running
if (session.alive) await lock.release();
await session.close().catch(() => {}); // a lost session has nothing left to close
client.close();
await db.end();
