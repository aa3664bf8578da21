import { runBench } from '../src/tools/bench/bench.ts';

/** `npm run bench -- [options]`; see `npm run bench -- --help` and the README. */
process.exitCode = await runBench(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});
