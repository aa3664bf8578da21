import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A child process that prints one JSON object per line on stdout and takes commands on
 * stdin (the examples' writers). Lines are queued until the test asks for them.
 */
export class LineProcess {
  readonly child: ChildProcess;
  private readonly lines: Record<string, unknown>[] = [];
  private readonly waiting: ((line: Record<string, unknown>) => void)[] = [];
  private stderr = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    file: string,
    args: readonly string[],
    cwd: string,
  ) {
    this.child = spawn(file, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { event: 'unparsed', text };
      }
      const waiter = this.waiting.shift();
      if (waiter === undefined) this.lines.push(line);
      else waiter(line);
    });
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** The next line it prints, within `timeoutMs`; the failure shows its stderr. */
  next(timeoutMs: number): Promise<Record<string, unknown>> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(onLine), 1);
        reject(
          new Error(`${this.name} printed nothing within ${timeoutMs} ms; stderr:\n${this.stderr}`),
        );
      }, timeoutMs);
      const onLine = (line: Record<string, unknown>): void => {
        clearTimeout(timer);
        resolve(line);
      };
      this.waiting.push(onLine);
    });
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  get stderrText(): string {
    return this.stderr;
  }
}
