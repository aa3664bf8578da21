import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { describeOp } from '../test/jepsen/history.ts';
import { runJepsen } from '../test/jepsen/run.ts';

/**
 * A Jepsen-style run against a local 3-node cluster of real processes:
 *
 *   npm run jepsen -- --seconds 30 --seed 7 --clients 4 --locks 2
 *
 * The seed reproduces the nemesis schedule and the clients' choices, not the OS
 * timing: two runs with one seed see the same faults, not the same history.
 * Exit code 1 when any checker finds a violation.
 */
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    seed: { type: 'string' },
    clients: { type: 'string', default: '4' },
    locks: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});

function positiveInt(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    console.error(`--${name} must be a positive integer, got ${text}`);
    process.exit(2);
  }
  return value;
}

const seconds = positiveInt('seconds', values.seconds);
const clients = positiveInt('clients', values.clients);
const locks = positiveInt('locks', values.locks);
const seed =
  values.seed === undefined
    ? Math.floor(Math.random() * 2 ** 31)
    : positiveInt('seed', values.seed);
const out = values.out ?? join(tmpdir(), `dlm-jepsen-${seed}-${Date.now()}.jsonl`);

console.log(
  `jepsen: seed ${seed}, ${seconds} s, ${clients} clients, ${locks} locks (the seed fixes the nemesis schedule, not the OS timing)`,
);
const wallStart = Date.now();
const result = await runJepsen({
  seconds,
  seed,
  clients,
  locks,
  onProgress: ({ elapsedMs, ops, nemesis }) =>
    console.log(`  ${(elapsedMs / 1000).toFixed(0)} s: ${ops} ops, ${nemesis} nemesis events`),
});
const wallMs = Date.now() - wallStart;

const counts = new Map<string, number>();
for (const op of result.ops) {
  const key = `${op.kind} ${op.outcome}`;
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
const nemesis = new Map<string, number>();
for (const event of result.nemesisEvents) {
  nemesis.set(event.kind, (nemesis.get(event.kind) ?? 0) + 1);
}
writeFileSync(
  out,
  result.ops.map((op) => JSON.stringify(op)).join('\n') +
    '\n' +
    result.nemesisEvents.map((event) => JSON.stringify({ nemesis: event })).join('\n') +
    '\n',
);

console.log(`\nsummary (seed ${seed}, wall ${(wallMs / 1000).toFixed(1)} s)`);
console.log(`  ops: ${result.ops.length}`);
for (const [key, count] of [...counts].sort()) console.log(`    ${key}: ${count}`);
console.log(
  `  nemesis: ${result.nemesisEvents.length} events (${[...nemesis].map(([kind, count]) => `${kind} ${count}`).join(', ')})`,
);
console.log(
  `  indeterminate overlaps (unanswered acquires, not violations): ${result.indeterminate}`,
);
console.log(`  violations: ${result.violations.length}`);
for (const violation of result.violations.slice(0, 20)) {
  console.log(`    [${violation.check}] ${violation.message}`);
  for (const id of violation.ops) {
    const op = result.ops[id];
    if (op !== undefined) console.log(`      ${describeOp(op)}`);
  }
}
if (result.violations.length > 0) console.log(`  cluster logs kept in ${result.clusterDir}`);
console.log(`  history (JSON lines, ops then nemesis events): ${out}`);
process.exit(result.violations.length > 0 ? 1 : 0);
