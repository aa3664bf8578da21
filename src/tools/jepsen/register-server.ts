import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  parseWrite,
  REGISTER_MODES,
  type RegisterDecision,
  type RegisterMode,
  type WriteRequest,
} from './register.ts';

/**
 * The resources of a Jepsen run, as their own process on loopback, so that clients reach
 * them over a network that can lose their calls and the run can freeze them.
 *
 *   node --import tsx src/tools/jepsen/register-server.ts
 *
 * It hosts two registers, one per mode, and prints one JSON line `{"port": N}` once it
 * listens, then serves, for MODE in fenced and ignore-tokens:
 *   POST /MODE/write  {lock, token, client, session, writeId} → {accepted, seq}
 *   GET  /MODE/log    every decision that register made, in its order (JSON array)
 *
 * `fenced` keeps, per lock, the highest token it has accepted and refuses a write with
 * a lower one (an equal token is the same holder writing again). `ignore-tokens` accepts
 * everything: the negative control, which the checker must catch under a client pause.
 * One process for both halves the start-up cost (a tsx start competes with the nodes').
 */
/** Bounds a register's memory: a run writing more than this is refused loudly. */
const DECISIONS_MAX = 1_000_000;
const BODY_BYTES_MAX = 4_096;

class Register {
  private readonly highest = new Map<string, bigint>();
  readonly decisions: RegisterDecision[] = [];

  constructor(readonly mode: RegisterMode) {}

  decide(request: WriteRequest): RegisterDecision {
    if (this.decisions.length >= DECISIONS_MAX) {
      throw new Error(`register ${this.mode}: more than ${DECISIONS_MAX} writes in one run`);
    }
    const token = BigInt(request.token);
    const seen = this.highest.get(request.lock);
    const accepted = this.mode === 'ignore-tokens' || seen === undefined || token >= seen;
    if (accepted && (seen === undefined || token > seen)) this.highest.set(request.lock, token);
    const decision: RegisterDecision = {
      ...request,
      seq: this.decisions.length + 1,
      atEpochMs: performance.timeOrigin + performance.now(),
      accepted,
    };
    this.decisions.push(decision);
    return decision;
  }
}

function main(): void {
  const registers = new Map<string, Register>(
    REGISTER_MODES.map((mode) => [mode, new Register(mode)]),
  );
  const server = createServer((req, res) => {
    handle(req, res, registers).catch((error: unknown) => {
      reply(res, 500, { error: error instanceof Error ? error.message : String(error) });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  // Started in a session of its own, nothing else ends it when the run dies.
  process.on('disconnect', () => process.exit(0));
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  registers: ReadonlyMap<string, Register>,
): Promise<void> {
  const [, mode = '', action = ''] = (req.url ?? '').split('/');
  const register = registers.get(mode);
  if (register === undefined) {
    reply(res, 404, { error: `no register ${mode} (url ${req.url})` });
    return;
  }
  if (req.method === 'GET' && action === 'log') {
    reply(res, 200, register.decisions);
    return;
  }
  if (req.method !== 'POST' || action !== 'write') {
    reply(res, 404, { error: `no route ${req.method} ${req.url}` });
    return;
  }
  const request = parseWrite(await readBody(req));
  if (typeof request === 'string') {
    reply(res, 400, { error: request });
    return;
  }
  const decision = register.decide(request);
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
