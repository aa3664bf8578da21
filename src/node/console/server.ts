import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConsoleActivity } from './activity.ts';
import { type ClusterView, type ConsoleMember, clusterView } from './cluster.ts';
import { type NodeView, nodeSummary, nodeView, type ViewedNode } from './view.ts';

/**
 * The web console: one page (console/ at the package root: HTML, CSS and a script, no
 * build step, nothing fetched from elsewhere) served beside /metrics, and the JSON it
 * reads. Read-only: GET only, and nothing it serves changes the node.
 *
 *   /                       the page
 *   /console/events?prefix= Server-Sent Events: a ConsoleFrame whenever it changed
 *   /console/view.json      one ConsoleFrame (for scripts and curl)
 *   /console/node.json      this node's NodeSummary (what the other nodes' consoles ask)
 *
 * Nothing runs while nobody watches: the refresh timer (which also asks the other nodes
 * for their summaries) starts with the first stream and stops with the last.
 */
export interface ConsoleFrame {
  readonly servedBy: string;
  readonly cluster: ClusterView;
  readonly view: NodeView;
}

export interface ConsoleOptions {
  readonly streamsMax: number;
  readonly refreshMs: number;
  readonly rowsMax: number;
}

const STATIC_DIR = new URL('../../../console/', import.meta.url);
const STATIC_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};
/** Everything the page loads comes from this node; inline scripts and other origins are refused. */
const PAGE_POLICY =
  "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const PREFIX_CHARS_MAX = 1_024;
/** A comment line on an idle stream, so that proxies and the browser keep it open. */
const KEEPALIVE_MS = 15_000;

interface Stream {
  readonly response: ServerResponse;
  readonly prefix: string;
  lastSent: string;
  lastSentMs: number;
}

export class ConsoleServer {
  private readonly streams = new Set<Stream>();
  private readonly files = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | null = null;
  private refreshing = false;

  constructor(
    private readonly node: ViewedNode,
    private readonly activity: ConsoleActivity,
    private readonly selfAddress: string,
    private readonly members: readonly ConsoleMember[],
    private readonly options: ConsoleOptions,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    for (const { file } of Object.values(STATIC_FILES)) {
      this.files.set(file, readFileSync(new URL(file, STATIC_DIR)));
    }
  }

  /** Answers `request` when it is the console's; false leaves it to the caller. */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const url = parseTarget(request.url ?? '/');
    if (url === null) {
      response.writeHead(400).end('bad request: the target is not a URL path\n');
      return true;
    }
    const page = STATIC_FILES[url.pathname];
    const isConsole = page !== undefined || url.pathname.startsWith('/console/');
    if (!isConsole) return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end('the console is read-only\n');
      return true;
    }
    const prefix = (url.searchParams.get('prefix') ?? '').slice(0, PREFIX_CHARS_MAX);
    if (page !== undefined) this.sendFile(response, page.file, page.type);
    else if (url.pathname === '/console/events') this.openStream(response, prefix);
    else if (url.pathname === '/console/view.json') {
      this.frame(prefix).then(
        (frame) => sendJson(response, frame),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    } else if (url.pathname === '/console/node.json') {
      sendJson(response, nodeSummary(this.node, this.activity, this.nowMs()));
    } else response.writeHead(404).end(`not found: ${url.pathname}\n`);
    return true;
  }

  /** Ends every stream (the browser reconnects to whichever node answers). */
  close(): void {
    for (const stream of this.streams) stream.response.end();
    this.streams.clear();
    this.stopTimer();
  }

  async frame(prefix: string): Promise<ConsoleFrame> {
    const nowMs = this.nowMs();
    const view = nodeView(this.node, this.activity, prefix, this.options.rowsMax, nowMs);
    const cluster = await clusterView(
      view.node,
      this.selfAddress,
      this.members,
      Math.min(this.options.refreshMs * 2, 2_000),
    );
    return { servedBy: this.node.id, cluster, view };
  }

  private sendFile(response: ServerResponse, file: string, type: string): void {
    response
      .writeHead(200, {
        'content-type': type,
        'cache-control': 'no-cache',
        'content-security-policy': PAGE_POLICY,
        'x-content-type-options': 'nosniff',
      })
      .end(this.files.get(file));
  }

  private openStream(response: ServerResponse, prefix: string): void {
    if (this.streams.size >= this.options.streamsMax) {
      response
        .writeHead(503, { 'retry-after': '5' })
        .end(
          `${this.options.streamsMax} console streams are open already (runtime.consoleStreamsMax)\n`,
        );
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    // Tells EventSource how soon to reconnect after the node goes away.
    response.write('retry: 1000\n\n');
    const stream: Stream = { response, prefix, lastSent: '', lastSentMs: this.nowMs() };
    this.streams.add(stream);
    response.on('close', () => {
      this.streams.delete(stream);
      if (this.streams.size === 0) this.stopTimer();
    });
    this.timer ??= setInterval(() => void this.refresh(), this.options.refreshMs);
    void this.refresh();
  }

  /** One frame per prefix watched, sent to the streams whose frame changed. */
  private async refresh(): Promise<void> {
    // A slow member (its answer waits for the timeout) must not pile refreshes up.
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const frames = new Map<string, string>();
      for (const stream of this.streams) {
        let text = frames.get(stream.prefix);
        if (text === undefined) {
          text = JSON.stringify(await this.frame(stream.prefix));
          frames.set(stream.prefix, text);
        }
        this.send(stream, text);
      }
    } finally {
      this.refreshing = false;
    }
  }

  private send(stream: Stream, text: string): void {
    const nowMs = this.nowMs();
    if (text !== stream.lastSent) {
      stream.response.write(`data: ${text}\n\n`);
      stream.lastSent = text;
      stream.lastSentMs = nowMs;
    } else if (nowMs - stream.lastSentMs >= KEEPALIVE_MS) {
      stream.response.write(': keep-alive\n\n');
      stream.lastSentMs = nowMs;
    }
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

function sendJson(response: ServerResponse, value: unknown): void {
  response
    .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(JSON.stringify(value));
}

/** The request target as a URL; null when it is none ("//", "/\\", "//:99999" throw). */
function parseTarget(target: string): URL | null {
  try {
    return new URL(target, 'http://console.invalid');
  } catch {
    return null;
  }
}
