/**
 * A minimal dlm client over plain @grpc/grpc-js: open a session, take a lock (waiting
 * up to --wait-ms), print the fencing token, hold it for --hold-ms while keeping the
 * session alive, release it, close the session.
 *
 *   npm run lock -- [--address HOST:PORT] [--wait-ms N] [--hold-ms N] [--shared] LOCK
 *
 * Any node's client address works: writes are forwarded to the leader. Every request
 * carries a fresh request_id, and this example retries UNAVAILABLE with the same one,
 * which the server deduplicates.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

interface Args {
  address: string;
  waitMs: number;
  holdMs: number;
  shared: boolean;
  lock: string;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = {
    address: '127.0.0.1:7101',
    waitMs: 10_000,
    holdMs: 2_000,
    shared: false,
    lock: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? '';
    const next = (): string => argv[++i] ?? fail(`${flag} needs a value`);
    if (flag === '--address') args.address = next();
    else if (flag === '--wait-ms') args.waitMs = Number(next());
    else if (flag === '--hold-ms') args.holdMs = Number(next());
    else if (flag === '--shared') args.shared = true;
    else if (flag.startsWith('--')) fail(`unknown option ${flag}`);
    else args.lock = flag;
  }
  if (args.lock === '')
    fail(
      'usage: npm run lock -- [--address HOST:PORT] [--wait-ms N] [--hold-ms N] [--shared] LOCK',
    );
  return args;
}

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

type Call = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: Record<string, unknown>) => void,
) => void;

function connect(address: string): Record<string, Call> {
  const protoPath = fileURLToPath(new URL('../proto/dlm.proto', import.meta.url));
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { v1: { Lock: grpc.ServiceClientConstructor } };
  };
  return new loaded.dlm.v1.Lock(address, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    Call
  >;
}

const requestId = (): string => BigInt(`0x${randomBytes(7).toString('hex')}`).toString();

/** Calls `method`, retrying UNAVAILABLE with the same request (and so the same request_id). */
async function call(
  client: Record<string, Call>,
  method: string,
  request: object,
  deadlineMs: number,
): Promise<Record<string, unknown>> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise((resolve, reject) => {
        const invoke = client[method];
        if (invoke === undefined) throw new Error(`no method ${method}`);
        invoke.call(client, request, { deadline: Date.now() + deadlineMs }, (error, response) =>
          error ? reject(error) : resolve(response),
        );
      });
    } catch (error) {
      const code = (error as grpc.ServiceError).code;
      if (code !== grpc.status.UNAVAILABLE || attempt >= 10) throw error;
      await new Promise((resolve) =>
        setTimeout(resolve, 100 * 2 ** Math.min(attempt, 4) * Math.random()),
      );
    }
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const client = connect(args.address);
  const opened = await call(
    client,
    'OpenSession',
    { ttl_ms: '10000', client_name: 'examples/lock', request_id: requestId() },
    5_000,
  );
  const sessionId = String(opened.session_id);
  console.log(`session ${sessionId} opened (ttl ${opened.ttl_ms} ms)`);
  const acquired = await call(
    client,
    'Acquire',
    {
      lock: args.lock,
      session_id: sessionId,
      mode: args.shared ? 'SHARED' : 'EXCLUSIVE',
      wait_ms: String(args.waitMs),
      request_id: requestId(),
      owner: `pid ${process.pid}`,
    },
    args.waitMs + 5_000,
  );
  if (acquired.acquired !== true) {
    console.log(`${args.lock} is held by: ${JSON.stringify(acquired.holders)}`);
  } else {
    const token = String(acquired.fencing_token);
    console.log(`acquired ${args.lock} with fencing token ${token}; holding for ${args.holdMs} ms`);
    const keepAlive = setInterval(
      () => void call(client, 'KeepAlive', { session_id: sessionId }, 2_000).catch(() => {}),
      3_000,
    );
    await new Promise((resolve) => setTimeout(resolve, args.holdMs));
    clearInterval(keepAlive);
    await call(
      client,
      'Release',
      { lock: args.lock, session_id: sessionId, fencing_token: token, request_id: requestId() },
      5_000,
    );
    console.log(`released ${args.lock}`);
  }
  await call(client, 'CloseSession', { session_id: sessionId, request_id: requestId() }, 5_000);
}

main().catch((error: unknown) => {
  process.stderr.write(`lock: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
