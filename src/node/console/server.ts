import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_RUNTIME_CONFIG } from '../../config/types.ts';
import type { ConsoleActivity } from './activity.ts';
import { type ClusterView, type ConsoleMember, clusterView } from './cluster.ts';
import type { MetricsClientTls } from './metrics-get.ts';
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
 * for their summaries) starts with the first stream and stops with the last. A frame is
 * built once per prefix per refresh (and the cluster rows once) whoever asks: streams
 * and view.json share it, and at most viewsMax view.json answers are built at once.
 * A stream whose reader does not keep up gets the latest frame when it drains, not
 * every frame, and is cut after streamStallMs without draining.
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
  /** runtime.consoleStreamStallMs when not given. */
  readonly streamStallMs?: number;
  /** runtime.consoleViewsMax when not given. */
  readonly viewsMax?: number;
  /** Blank owners and client names (an auth section is configured); false when not given. */
  readonly namesHidden?: boolean;
  /** How to reach the other members' metrics addresses; null or absent: plain HTTP. */
  readonly metricsTls?: MetricsClientTls | null;
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
  /** Since when the response has waited for 'drain' (its reader is behind); null when not. */
  stalledSinceMs: number | null;
  /** The latest frame skipped while stalled: sent on drain, older ones are dropped. */
  pending: string | null;
}

/** A frame's text, built at `atMs`: shared by whoever asks for its prefix within a refresh. */
interface CachedFrame {
  readonly atMs: number;
  readonly text: Promise<string>;
}

export class ConsoleServer {
  private readonly streams = new Set<Stream>();
  private readonly files = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | null = null;
  private refreshing = false;
  private readonly frames = new Map<string, CachedFrame>();
  private cluster: { readonly atMs: number; readonly view: Promise<ClusterView> } | null = null;
  private viewsBuilding = 0;
  private readonly streamStallMs: number;
  private readonly viewsMax: number;

  constructor(
    private readonly node: ViewedNode,
    private readonly activity: ConsoleActivity,
    private readonly selfAddress: string,
    private readonly members: readonly ConsoleMember[],
    private readonly options: ConsoleOptions,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.streamStallMs = options.streamStallMs ?? DEFAULT_RUNTIME_CONFIG.consoleStreamStallMs;
    this.viewsMax = options.viewsMax ?? DEFAULT_RUNTIME_CONFIG.consoleViewsMax;
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
    else if (url.pathname === '/console/view.json') this.sendView(response, prefix);
    else if (url.pathname === '/console/node.json') {
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
    const { rowsMax, namesHidden = false } = this.options;
    const view = nodeView(this.node, this.activity, prefix, rowsMax, nowMs, namesHidden);
    return { servedBy: this.node.id, cluster: await this.clusterView(nowMs), view };
  }

  /** The cluster rows, asked of the members at most once per refreshMs. */
  private clusterView(nowMs: number): Promise<ClusterView> {
    if (this.cluster !== null && nowMs - this.cluster.atMs < this.options.refreshMs) {
      return this.cluster.view;
    }
    const self = nodeSummary(this.node, this.activity, nowMs);
    const timeoutMs = Math.min(this.options.refreshMs * 2, 2_000);
    const view = clusterView(
      self,
      this.selfAddress,
      this.members,
      timeoutMs,
      this.options.metricsTls ?? null,
    );
    this.cluster = { atMs: nowMs, view };
    return view;
  }

  /** The frame of `prefix` as JSON text: built once per refreshMs, however many ask. */
  private frameText(prefix: string): Promise<string> {
    const nowMs = this.nowMs();
    const cached = this.frames.get(prefix);
    if (cached !== undefined && nowMs - cached.atMs < this.options.refreshMs) return cached.text;
    const text = this.frame(prefix).then((frame) => JSON.stringify(frame));
    // Only this refresh's frames are worth keeping; the newest replace the oldest.
    this.frames.delete(prefix);
    this.frames.set(prefix, { atMs: nowMs, text });
    for (const [key, frame] of this.frames) {
      const full = this.frames.size > this.options.streamsMax + this.viewsMax;
      if (full || nowMs - frame.atMs >= this.options.refreshMs) this.frames.delete(key);
    }
    return text;
  }

  private sendView(response: ServerResponse, prefix: string): void {
    if (this.viewsBuilding >= this.viewsMax) {
      response
        .writeHead(503, { 'retry-after': '1' })
        .end(`${this.viewsMax} console views are being built already (runtime.consoleViewsMax)\n`);
      return;
    }
    this.viewsBuilding++;
    this.frameText(prefix)
      .then(
        (text) =>
          response
            .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
            .end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      )
      .finally(() => this.viewsBuilding--);
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
    const stream: Stream = {
      response,
      prefix,
      lastSent: '',
      lastSentMs: this.nowMs(),
      stalledSinceMs: null,
      pending: null,
    };
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
      // A new refresh: every frame is built afresh, once per prefix.
      this.frames.clear();
      this.cluster = null;
      for (const stream of this.streams) this.send(stream, await this.frameText(stream.prefix));
    } catch {
      // Nothing here may end the process (refresh runs from a timer): the watchers keep
      // their last frame, and the next refresh builds afresh.
    } finally {
      this.refreshing = false;
    }
  }

  private send(stream: Stream, text: string): void {
    const nowMs = this.nowMs();
    if (stream.stalledSinceMs !== null) {
      // Its reader is behind: keep only the latest frame, and give up on a dead reader
      // (the 'close' handler forgets the stream).
      if (nowMs - stream.stalledSinceMs >= this.streamStallMs) stream.response.destroy();
      else stream.pending = text;
      return;
    }
    if (text !== stream.lastSent) {
      this.write(stream, `data: ${text}\n\n`, nowMs);
      stream.lastSent = text;
    } else if (nowMs - stream.lastSentMs >= KEEPALIVE_MS) {
      this.write(stream, ': keep-alive\n\n', nowMs);
    }
  }

  /** Writes, and when the response says to wait for 'drain', waits before the next. */
  private write(stream: Stream, chunk: string, nowMs: number): void {
    stream.lastSentMs = nowMs;
    if (stream.response.write(chunk)) return;
    stream.stalledSinceMs = nowMs;
    stream.response.once('drain', () => {
      stream.stalledSinceMs = null;
      const pending = stream.pending;
      stream.pending = null;
      if (pending !== null) this.send(stream, pending);
    });
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
