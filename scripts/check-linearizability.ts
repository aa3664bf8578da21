import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  checkLockHistory,
  explainCheck,
  fromJepsenLite,
  type JepsenLiteOp,
} from '../src/tools/jepsen/index.ts';

/**
 * Checks a history that `npm run jepsen` wrote (results/<run-id>/history.jsonl) for
 * linearizability:
 *
 *   node --import tsx scripts/check-linearizability.ts FILE [--drift 0.05] [--time-limit-ms 60000]
 *
 * Lines without an op (the nemesis events) are skipped. Exit code 0 when linearizable,
 * 1 on a violation, 3 when the budget ran out (unknown is not a pass).
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    drift: { type: 'string', default: '0.05' },
    'time-limit-ms': { type: 'string', default: '60000' },
  },
});

const file = positionals[0];
if (file === undefined) {
  console.error('usage: check-linearizability FILE [--drift 0.05] [--time-limit-ms 60000]');
  process.exit(2);
}
const ops = readFileSync(file, 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as Partial<JepsenLiteOp>)
  .filter((op): op is JepsenLiteOp => typeof op.id === 'number' && typeof op.kind === 'string');

// A history that records its session calls records every close: none is made up then.
const recordsCloses = ops.some((op) => op.kind === 'close-session');
const result = checkLockHistory(fromJepsenLite(ops, { closeAfterLastOp: !recordsCloses }), {
  clockDriftMax: Number(values.drift),
  timeLimitMs: Number(values['time-limit-ms']),
});
console.log(`${file}: ${ops.length} ops read`);
console.log(explainCheck(result));
for (const report of result.locks) {
  const { statesExplored, elapsedMs } = report.stats;
  console.log(
    `  ${report.lock}: ${report.verdict}, ${report.ops.length} ops, ${statesExplored} states, ${elapsedMs.toFixed(1)} ms`,
  );
}
process.exit({ ok: 0, violation: 1, unknown: 3 }[result.verdict]);
