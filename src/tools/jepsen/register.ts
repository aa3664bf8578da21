import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PAUSED_CHILD_SPAWN } from './pausable-spawn.ts';

/**
 * The registers' wire format, and the run's handle on the register process
 * (register-server.ts). Clients reach it over HTTP on loopback with a timeout per call:
 * a call that times out or fails on the way is 'info', as its write may have landed.
 */

export const REGISTER_MODES = ['fenced', 'ignore-tokens'] as const;
export type RegisterMode = (typeof REGISTER_MODES)[number];

export interface WriteRequest {
  readonly lock: string;
  readonly token: string;
  readonly client: string;
  readonly session: string;
  /** Unique in the run: ties this decision to the client's write op. */
  readonly writeId: string;
}

export interface RegisterDecision extends WriteRequest {
  /** The order in which this register decided; 1, 2, 3, … */
  readonly seq: number;
  /** performance.timeOrigin + performance.now() in the register process, for readers. */
  readonly atEpochMs: number;
  readonly accepted: boolean;
}

/** The request, or what is wrong with it. */
export function parseWrite(body: string): WriteRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return `body is not JSON: ${body.slice(0, 80)}`;
  }
  if (typeof value !== 'object' || value === null) return 'body is not an object';
  const fields = value as Record<string, unknown>;
  for (const name of ['lock', 'token', 'client', 'session', 'writeId']) {
    if (typeof fields[name] !== 'string' || fields[name] === '') {
      return `field ${name} must be a non-empty string, got ${JSON.stringify(fields[name])}`;
    }
  }
  if (!/^[0-9]+$/.test(fields.token as string)) {
    return `field token must be a decimal integer, got ${JSON.stringify(fields.token)}`;
  }
  return {
    lock: fields.lock as string,
    token: fields.token as string,
    client: fields.client as string,
    session: fields.session as string,
    writeId: fields.writeId as string,
  };
}

export type WriteOutcome =
  | { readonly outcome: 'ok' | 'fail'; readonly seq: number }
  | { readonly outcome: 'info'; readonly error: string };

const SERVER_PATH = fileURLToPath(new URL('./register-server.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const START_TIMEOUT_MS = 20_000;
const LOG_FETCH_ATTEMPTS_MAX = 10;

/** The register process: both registers, frozen and stopped together. */
export class RegisterProcess {
  private constructor(
    private readonly child: ChildProcess,
    private readonly connection: RegisterConnection,
  ) {}

  /** Starts the process and waits (bounded) until it listens; stderr goes to `logPath`. */
  static async start(logPath: string): Promise<RegisterProcess> {
    const stderr = openSync(logPath, 'a');
    // A session of its own (see PAUSED_CHILD_SPAWN); it exits when the IPC channel closes.
    const child = spawn(process.execPath, ['--import', 'tsx', SERVER_PATH], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', stderr, 'ipc'],
      ...PAUSED_CHILD_SPAWN,
    });
    closeSync(stderr); // The child holds its own copy.
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(
            `the register process did not listen within ${START_TIMEOUT_MS} ms; see ${logPath}`,
          ),
        );
      }, START_TIMEOUT_MS);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `the register process exited before listening (code ${code}, ${signal}); see ${logPath}`,
          ),
        );
      });
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.once('line', (line) => {
        clearTimeout(timer);
        const port = (JSON.parse(line) as { port?: unknown }).port;
        if (typeof port === 'number') resolve(port);
        else reject(new Error(`the register process printed ${line} instead of {"port": N}`));
      });
    });
    child.removeAllListeners('exit');
    return new RegisterProcess(child, new RegisterConnection(port));
  }

  /** Where other processes (a client worker) reach the registers. */
  get port(): number {
    return this.connection.port;
  }

  /** The register of one mode in this process; reading its log resumes the process. */
  register(mode: RegisterMode): RegisterClient {
    return new RegisterClient(this.connection, mode, () => this.resume());
  }

  /** SIGSTOP: calls to it hang until resume(), and time out. */
  pause(): void {
    this.child.kill('SIGSTOP');
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  stop(): void {
    this.connection.close();
    this.child.kill('SIGKILL');
  }
}

/** Calls to the register process from any process: HTTP on loopback, kept alive. */
export class RegisterConnection {
  private readonly agent = new Agent({ keepAlive: true });

  constructor(readonly port: number) {}

  close(): void {
    this.agent.destroy();
  }

  /**
   * One HTTP call over a kept-alive connection (fetch costs about three times the CPU,
   * which the clients' write rate pays on a loaded machine). Rejects on a timeout or a
   * broken connection; the socket is then destroyed, so no late answer is read.
   */
  http(
    method: 'GET' | 'POST',
    path: string,
    body: string,
    timeoutMs: number,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method,
          agent: this.agent,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, body: text });
          });
          res.on('error', reject);
        },
      );
      const timer = setTimeout(() => {
        req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.end(body);
    });
  }
}

/** One register of the process, as clients call it. */
export class RegisterClient {
  constructor(
    private readonly connection: RegisterConnection,
    readonly mode: RegisterMode,
    /** Called before reading the log: the run resumes a frozen register process. */
    private readonly beforeReading: () => void = () => {},
  ) {}

  /** One write; 'info' when it timed out or the connection failed (it may have landed). */
  async write(request: WriteRequest, timeoutMs: number): Promise<WriteOutcome> {
    let answer: { status: number; body: string };
    try {
      answer = await this.connection.http(
        'POST',
        `/${this.mode}/write`,
        JSON.stringify(request),
        timeoutMs,
      );
    } catch (error) {
      return {
        outcome: 'info',
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      };
    }
    const body = JSON.parse(answer.body) as { accepted?: unknown; seq?: unknown };
    if (answer.status !== 200 || typeof body.accepted !== 'boolean') {
      // A refusal of the request itself is a bug in the run, not an unknown outcome.
      throw new Error(`register (${this.mode}) answered ${answer.status}: ${answer.body}`);
    }
    return { outcome: body.accepted ? 'ok' : 'fail', seq: Number(body.seq) };
  }

  /** Every decision the register made, in its order (the process is resumed first). */
  async decisions(): Promise<RegisterDecision[]> {
    this.beforeReading();
    let lastError: unknown = null;
    for (let attempt = 0; attempt < LOG_FETCH_ATTEMPTS_MAX; attempt++) {
      try {
        const answer = await this.connection.http('GET', `/${this.mode}/log`, '', 10_000);
        return JSON.parse(answer.body) as RegisterDecision[];
      } catch (error) {
        lastError = error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    throw new Error(`register (${this.mode}): could not fetch its log: ${String(lastError)}`);
  }
}
