import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromWorker, ToWorker } from './protocol.ts';

/**
 * The coordinator's side of the worker processes that run the bench clients. Workers
 * live for the whole run, so their code is warm for every cell.
 */
const WORKER_PATH = fileURLToPath(new URL('./worker.ts', import.meta.url));
/** The worker is TypeScript: it loads through the same tsx loader as this process. */
const TSX_LOADER = import.meta.resolve('tsx');
const EXIT_GRACE_MS = 2_000;

export const WORKERS_MAX = 64;

type Kind = FromWorker['kind'];

interface Pending {
  readonly expect: Kind;
  readonly resolve: (message: FromWorker) => void;
  readonly reject: (error: Error) => void;
}

export class WorkerPool {
  private readonly pending = new Map<ChildProcess, Pending>();
  private stopped = false;

  private constructor(private readonly children: readonly ChildProcess[]) {}

  static start(count: number, onProgress: (worker: number, pairs: number) => void): WorkerPool {
    const children = Array.from({ length: count }, () =>
      fork(WORKER_PATH, [], {
        execArgv: ['--import', TSX_LOADER],
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const pool = new WorkerPool(children);
    children.forEach((child, worker) => {
      child.on('message', (message: FromWorker) => {
        if (message.kind === 'progress') onProgress(worker, message.pairs);
        else pool.settle(child, worker, message);
      });
      // A send to a worker that is gone fails that ask (see ask()); nothing more to do here.
      child.on('error', () => {});
      child.on('exit', (code, signal) =>
        pool.fail(
          child,
          new Error(`bench worker ${worker} exited (code ${code}, signal ${signal})`),
        ),
      );
    });
    return pool;
  }

  get size(): number {
    return this.children.length;
  }

  /**
   * Sends each worker its message and waits for every one to answer `expect`. Fails
   * if any worker reports a failure, exits, or has not answered within `timeoutMs`.
   */
  async ask<K extends Kind>(
    messageFor: (worker: number) => ToWorker,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<FromWorker, { kind: K }>[]> {
    if (this.stopped) throw new Error(`bench workers were stopped before '${expect}'`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`bench workers did not answer '${expect}' within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    const answers = this.children.map(
      (child, worker) =>
        new Promise<FromWorker>((resolve, reject) => {
          this.pending.set(child, { expect, resolve, reject });
          child.send(messageFor(worker), (error) => {
            if (error !== null) reject(new Error(`bench worker ${worker}: ${error.message}`));
          });
        }),
    );
    try {
      return (await Promise.race([Promise.all(answers), timeout])) as Extract<
        FromWorker,
        { kind: K }
      >[];
    } finally {
      clearTimeout(timer);
      for (const child of this.children) this.pending.delete(child);
    }
  }

  /** Disconnects every worker (they exit on that), then kills any still running. */
  async stop(): Promise<void> {
    this.stopped = true;
    const running = this.children.filter(
      (child) => child.exitCode === null && child.signalCode === null,
    );
    const exited = running.map((child) => new Promise((resolve) => child.once('exit', resolve)));
    for (const child of running) if (child.connected) child.disconnect();
    const grace = new Promise((resolve) => setTimeout(resolve, EXIT_GRACE_MS).unref());
    await Promise.race([Promise.all(exited), grace]);
    for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
  }

  private settle(child: ChildProcess, worker: number, message: FromWorker): void {
    const pending = this.pending.get(child);
    if (pending === undefined) return;
    this.pending.delete(child);
    if (message.kind === 'failed')
      pending.reject(new Error(`bench worker ${worker}: ${message.message}`));
    else if (message.kind !== pending.expect) {
      pending.reject(
        new Error(
          `bench worker ${worker} answered '${message.kind}', expected '${pending.expect}'`,
        ),
      );
    } else pending.resolve(message);
  }

  private fail(child: ChildProcess, error: Error): void {
    const pending = this.pending.get(child);
    this.pending.delete(child);
    pending?.reject(error);
  }
}
