import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseWrite, type RegisterDecision, type WriteRequest } from './register.ts';

/**
 * The fenced resource of a Jepsen run, as its own process on loopback, so that clients
 * reach it over a network that can lose their calls and the run can freeze it.
 *
 *   node --import tsx test/jepsen/register-server.ts --mode fenced|ignore-tokens
 *
 * It prints one JSON line `{"port": N}` once it listens, then serves:
 *   POST /write  {lock, token, client, session, writeId} → {accepted, seq}
 *   GET  /log    every decision it made, in the order it made them (JSON array)
 *
 * `fenced` keeps, per lock, the highest token it has accepted and refuses a write with
 * a lower one (an equal token is the same holder writing again). `ignore-tokens` accepts
 * everything: the negative control, which the checker must catch under a client pause.
 */
/** Bounds the register's memory: a run writing more than this is refused loudly. */
const DECISIONS_MAX = 1_000_000;
const BODY_BYTES_MAX = 4_096;

function main(): void {
  const { values } = parseArgs({ options: { mode: { type: 'string', default: 'fenced' } } });
  const mode = values.mode;
  if (mode !== 'fenced' && mode !== 'ignore-tokens') {
    console.error(`register-server: --mode must be fenced or ignore-tokens, got ${mode}`);
    process.exit(2);
  }
  const highest = new Map<string, bigint>();
  const decisions: RegisterDecision[] = [];

  const decide = (request: WriteRequest): RegisterDecision => {
    if (decisions.length >= DECISIONS_MAX) {
      throw new Error(`register-server: more than ${DECISIONS_MAX} writes in one run`);
    }
    const token = BigInt(request.token);
    const seen = highest.get(request.lock);
    const accepted = mode === 'ignore-tokens' || seen === undefined || token >= seen;
    if (accepted && (seen === undefined || token > seen)) highest.set(request.lock, token);
    const decision: RegisterDecision = {
      ...request,
      seq: decisions.length + 1,
      atEpochMs: performance.timeOrigin + performance.now(),
      accepted,
    };
    decisions.push(decision);
    return decision;
  };

  const server = createServer((req, res) => {
    handle(req, res, decide, decisions).catch((error: unknown) => {
      reply(res, 500, { error: error instanceof Error ? error.message : String(error) });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  decide: (request: WriteRequest) => RegisterDecision,
  decisions: readonly RegisterDecision[],
): Promise<void> {
  if (req.method === 'GET' && req.url === '/log') {
    reply(res, 200, decisions);
    return;
  }
  if (req.method !== 'POST' || req.url !== '/write') {
    reply(res, 404, { error: `no route ${req.method} ${req.url}` });
    return;
  }
  const body = await readBody(req);
  const request = parseWrite(body);
  if (typeof request === 'string') {
    reply(res, 400, { error: request });
    return;
  }
  const decision = decide(request);
  reply(res, 200, { accepted: decision.accepted, seq: decision.seq });
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > BODY_BYTES_MAX) throw new Error(`body over ${BODY_BYTES_MAX} bytes`);
  }
  return body;
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

main();
