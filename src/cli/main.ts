/** Process entry point of the `dlm` command; all logic lives in cli.ts. */
import { runCli } from './cli.ts';

// A reader that went away (`dlm status | head`) is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

// With TLS to an IP address, grpc-js passes the IP as the TLS server name and Node
// warns (DEP0123) on every connection. The certificate is still checked against the
// IP; the warning is noise in every command's output, so it alone is dropped.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' ? (rest[0] as { code?: string }).code : rest[1];
  if (code === 'DEP0123') return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});
