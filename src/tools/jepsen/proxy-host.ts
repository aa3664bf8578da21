import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { LinkFaults, LinkStats } from './proxy.ts';

/**
 * A process that hosts LinkProxies, driven over its stdin and stdout with one JSON
 * object per line. It exists because a proxy for the link n1→n2 must run inside n1's
 * network namespace (see proxy-mesh.ts), and a process cannot put one socket in one
 * namespace and the next in another; the harness in the root namespace talks to it
 * through pipes, which no partition can cut.
 *
 * The host exits when its stdin closes, so it never outlives the harness.
 */
export type HostRequest =
  | {
      readonly op: 'start';
      readonly name: string;
      readonly listen: string;
      readonly target: string;
      readonly seed: number;
    }
  | { readonly op: 'set'; readonly name: string; readonly faults: LinkFaults }
  | { readonly op: 'reset'; readonly name: string }
  | { readonly op: 'stats' }
  | { readonly op: 'close' };

export type HostReply =
  | {
      readonly id: number;
      readonly ok: true;
      readonly address?: string;
      readonly stats?: Record<string, LinkStats>;
    }
  | { readonly id: number; readonly ok: false; readonly error: string };

export const HOST_MAIN = new URL('./proxy-host-main.ts', import.meta.url).pathname;
/** No request takes long: one that gets no answer means the host is stuck or gone. */
export const REQUEST_TIMEOUT_MS = 5_000;
/** Loading the host (tsx compiles it) takes seconds on a busy machine. */
export const STARTUP_TIMEOUT_MS = 30_000;
/** The host's first line: it reads requests from then on. */
export const READY_LINE = '{"ready":true}';

/** The harness's side of one proxy host process. */
export class ProxyHostClient {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (reply: HostReply) => void; reject: (error: Error) => void }
  >();
  private exited: string | null = null;
  private stderrTail = '';
  private markReady: () => void = () => {};
  private readonly ready: Promise<void>;

  /** `child` must run HOST_MAIN with piped stdin, stdout and stderr. */
  constructor(
    private readonly child: ChildProcess,
    /** Names the host in errors, e.g. "proxies in n1's namespace". */
    private readonly label: string,
  ) {
    if (child.stdout === null || child.stdin === null)
      throw new Error(`${label}: the host needs piped stdin and stdout`);
    createInterface({ input: child.stdout }).on('line', (line) => this.answer(line));
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-2_000);
    });
    child.once('exit', (code, signal) => {
      this.exited = `exited (${signal ?? `code ${String(code)}`})${this.stderrTail === '' ? '' : `: ${this.stderrTail.trim()}`}`;
      for (const { reject } of this.waiting.values()) reject(new Error(`${label} ${this.exited}`));
      this.waiting.clear();
    });
    // A write to a host that died is reported by the request, not as an unhandled error.
    child.stdin.on('error', () => {});
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${label}: not ready within ${STARTUP_TIMEOUT_MS} ms`)),
        STARTUP_TIMEOUT_MS,
      );
      this.markReady = () => {
        clearTimeout(timer);
        resolve();
      };
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`${label} ${this.exited ?? 'exited'}`));
      });
    });
    // Reported by the first request; a host that never becomes ready must not crash the harness.
    this.ready.catch(() => {});
  }

  async request(request: HostRequest): Promise<HostReply & { ok: true }> {
    if (this.exited !== null) throw new Error(`${this.label} ${this.exited}`);
    await this.ready;
    const id = this.nextId++;
    const reply = await new Promise<HostReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new Error(`${this.label}: no answer to ${request.op} within ${REQUEST_TIMEOUT_MS} ms`),
        );
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, {
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.stdin?.write(`${JSON.stringify({ id, ...request })}\n`);
    });
    if (!reply.ok) throw new Error(`${this.label}: ${request.op} failed: ${reply.error}`);
    return reply;
  }

  /** Asks the host to close its proxies and exit; kills it if it does not within the timeout. */
  async close(): Promise<void> {
    if (this.exited !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.request({ op: 'close' }).catch(() => {});
    const timer = setTimeout(() => this.child.kill('SIGKILL'), REQUEST_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private answer(line: string): void {
    if (line === READY_LINE) {
      this.markReady();
      return;
    }
    let reply: HostReply;
    try {
      reply = JSON.parse(line) as HostReply;
    } catch {
      return; // Not a reply (nothing else should print, but a stray line must not kill the harness).
    }
    const waiter = this.waiting.get(reply.id);
    this.waiting.delete(reply.id);
    waiter?.resolve(reply);
  }
}
