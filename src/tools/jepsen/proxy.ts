import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { parseAddress } from '../../config/address.ts';
import { Prng } from '../../util/prng.ts';

/**
 * A user-space TCP proxy for one directed link (one node dialling one peer), for fault
 * injection where the kernel has no `tc netem`: it listens, forwards every connection
 * to one target, and degrades the link as told, at run time.
 *
 * It works on byte streams, not messages: it can delay, slow down, stall and reset, but
 * it never drops or reorders bytes inside a connection (that would corrupt the HTTP/2
 * framing, which real TCP never does either; real loss shows up as delay and resets).
 *
 * Random draws come from a seeded PRNG (src/util/prng.ts), so a run's fault decisions
 * can be replayed for the same sequence of connections and chunks.
 */
export interface LinkFaults {
  /** Added to every chunk's trip, in each direction. */
  readonly delayMs?: number;
  /** Each chunk's delay is drawn uniformly from delayMs ± jitterMs (never below 0). Bytes keep their order. */
  readonly jitterMs?: number;
  /** A slow link: bytes leave at most this fast, in each direction. */
  readonly bytesPerSecond?: number;
  /**
   * Loss of whole connections: a new connection is reset at once with this probability,
   * and so is each open one, once per DROP_CHECK_INTERVAL_MS.
   */
  readonly dropProbability?: number;
  /**
   * Connections are accepted and nothing is forwarded either way; what arrives is
   * discarded. When the blackhole lifts, every connection it touched is reset, since a
   * stream with a hole in it cannot go on (TCP would have timed it out).
   */
  readonly blackhole?: boolean;
}

export interface LinkStats {
  readonly connectionsAccepted: number;
  readonly connectionsOpen: number;
  /** Reset by the proxy: drops, blackhole ends, the connection cap, an unreachable target. */
  readonly connectionsReset: number;
  /** Delivered towards the target. */
  readonly bytesToTarget: number;
  /** Delivered back towards whoever connected. */
  readonly bytesToSource: number;
  /** Thrown away by a blackhole. */
  readonly bytesDiscarded: number;
}

export interface LinkProxyOptions {
  /** host:port to listen on; port 0 picks a free one (see `address`). */
  readonly listen: string;
  /** host:port every connection is forwarded to. */
  readonly target: string;
  readonly seed: number;
  readonly faults?: LinkFaults;
}

export const DROP_CHECK_INTERVAL_MS = 1_000;
/** A slow link sends in pieces this big, so the bytes trickle rather than arrive at once. */
const SLOW_PIECE_BYTES = 4_096;
/** Bytes held for one direction of one connection before its sender is paused. */
const BUFFERED_BYTES_MAX = 4 * 1024 * 1024;
/** More open connections than any peer link needs; past it new ones are reset. */
const CONNECTIONS_MAX = 256;

/** Refuses faults that make no sense, naming the field; returns the faults with defaults. */
export function checkedFaults(faults: LinkFaults): Required<LinkFaults> {
  const problems: string[] = [];
  const nonNegative = (field: keyof LinkFaults, value: number | undefined): void => {
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      problems.push(`${field} must be a finite number >= 0, got ${value}`);
    }
  };
  nonNegative('delayMs', faults.delayMs);
  nonNegative('jitterMs', faults.jitterMs);
  const rate = faults.bytesPerSecond;
  if (rate !== undefined && !(Number.isFinite(rate) && rate > 0)) {
    problems.push(`bytesPerSecond must be a finite number > 0, got ${rate}`);
  }
  const drop = faults.dropProbability;
  if (drop !== undefined && !(drop >= 0 && drop <= 1)) {
    problems.push(`dropProbability must be within [0, 1], got ${drop}`);
  }
  if (faults.blackhole !== undefined && typeof faults.blackhole !== 'boolean') {
    problems.push(`blackhole must be a boolean, got ${String(faults.blackhole)}`);
  }
  const known = new Set(['delayMs', 'jitterMs', 'bytesPerSecond', 'dropProbability', 'blackhole']);
  for (const key of Object.keys(faults)) {
    if (!known.has(key)) problems.push(`unknown fault ${JSON.stringify(key)}`);
  }
  if (problems.length > 0) throw new Error(`invalid link faults: ${problems.join('; ')}`);
  return {
    delayMs: faults.delayMs ?? 0,
    jitterMs: faults.jitterMs ?? 0,
    bytesPerSecond: faults.bytesPerSecond ?? Number.POSITIVE_INFINITY,
    dropProbability: faults.dropProbability ?? 0,
    blackhole: faults.blackhole ?? false,
  };
}

export class LinkProxy {
  private faults: Required<LinkFaults>;
  private readonly prng: Prng;
  private readonly relays = new Set<Relay>();
  private dropTimer: NodeJS.Timeout | null = null;
  private boundAddress = '';
  private readonly counts = {
    connectionsAccepted: 0,
    connectionsReset: 0,
    bytesToTarget: 0,
    bytesToSource: 0,
    bytesDiscarded: 0,
  };

  private constructor(
    private readonly server: Server,
    readonly target: { readonly host: string; readonly port: number },
    seed: number,
    faults: LinkFaults,
  ) {
    this.prng = new Prng(seed);
    this.faults = checkedFaults(faults);
  }

  static async start(options: LinkProxyOptions): Promise<LinkProxy> {
    // Port 0 (any free port) is fine to listen on, but not to connect to.
    const listen = parseAddress(options.listen.replace(/:0$/, ':1'));
    if (!listen.ok) throw new Error(`proxy listen address: ${listen.problem}`);
    const listenPort = options.listen.endsWith(':0') ? 0 : listen.address.port;
    const target = parseAddress(options.target);
    if (!target.ok) throw new Error(`proxy target address: ${target.problem}`);
    const server = createServer({ noDelay: true });
    const proxy = new LinkProxy(server, target.address, options.seed, options.faults ?? {});
    server.on('connection', (socket) => proxy.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) =>
        reject(new Error(`proxy could not listen on ${options.listen}: ${error.message}`)),
      );
      server.listen(listenPort, listen.address.host, () => resolve());
    });
    const bound = server.address();
    const port = bound !== null && typeof bound === 'object' ? bound.port : listenPort;
    const host = listen.address.host.includes(':')
      ? `[${listen.address.host}]`
      : listen.address.host;
    proxy.boundAddress = `${host}:${port}`;
    proxy.applyDropTimer();
    return proxy;
  }

  /** Where it listens, with the real port when it was started on port 0. */
  get address(): string {
    return this.boundAddress;
  }

  currentFaults(): Required<LinkFaults> {
    return { ...this.faults };
  }

  /** Takes effect at once, for bytes that arrive from now on and for open connections. */
  setFaults(faults: LinkFaults): void {
    const next = checkedFaults(faults);
    const wasBlackhole = this.faults.blackhole;
    this.faults = next;
    if (next.blackhole && !wasBlackhole) {
      for (const relay of this.relays) relay.swallow();
    }
    if (!next.blackhole && wasBlackhole) {
      for (const relay of [...this.relays]) if (relay.swallowed) this.reset(relay);
    }
    this.applyDropTimer();
  }

  /** Resets every open connection; returns how many. */
  resetConnections(): number {
    const relays = [...this.relays];
    for (const relay of relays) this.reset(relay);
    return relays.length;
  }

  stats(): LinkStats {
    return { ...this.counts, connectionsOpen: this.relays.size };
  }

  async close(): Promise<void> {
    if (this.dropTimer !== null) clearInterval(this.dropTimer);
    this.dropTimer = null;
    for (const relay of [...this.relays]) relay.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal for Relay */
  delayDrawMs(): number {
    const { delayMs, jitterMs } = this.faults;
    if (jitterMs === 0) return delayMs;
    return Math.max(0, delayMs + (this.prng.nextFloat() * 2 - 1) * jitterMs);
  }

  /** @internal for Relay */
  get current(): Required<LinkFaults> {
    return this.faults;
  }

  /** @internal for Relay */
  counted(direction: 'bytesToTarget' | 'bytesToSource' | 'bytesDiscarded', bytes: number): void {
    this.counts[direction] += bytes;
  }

  /** @internal for Relay */
  forget(relay: Relay): void {
    this.relays.delete(relay);
  }

  private accept(source: Socket): void {
    this.counts.connectionsAccepted++;
    // Resets are this proxy's business; a socket error must never end the process.
    source.on('error', () => {});
    const refuse =
      this.relays.size >= CONNECTIONS_MAX ||
      (this.faults.dropProbability > 0 && this.prng.chance(this.faults.dropProbability));
    if (refuse) {
      this.counts.connectionsReset++;
      hardClose(source);
      return;
    }
    const relay = new Relay(this, source);
    this.relays.add(relay);
    relay.open();
  }

  /** @internal for Relay: a reset the proxy decided on. */
  reset(relay: Relay): void {
    if (!this.relays.has(relay)) return;
    this.counts.connectionsReset++;
    relay.destroy();
  }

  private applyDropTimer(): void {
    const dropping = this.faults.dropProbability > 0;
    if (dropping && this.dropTimer === null) {
      this.dropTimer = setInterval(() => this.dropSome(), DROP_CHECK_INTERVAL_MS);
      this.dropTimer.unref();
    } else if (!dropping && this.dropTimer !== null) {
      clearInterval(this.dropTimer);
      this.dropTimer = null;
    }
  }

  private dropSome(): void {
    for (const relay of [...this.relays]) {
      if (this.prng.chance(this.faults.dropProbability)) this.reset(relay);
    }
  }
}

/** One accepted connection and the one it opened to the target. */
class Relay {
  /** Touched by a blackhole: reset when it lifts. */
  swallowed = false;
  private target: Socket | null = null;
  private toTarget: Pipe | null = null;
  private toSource: Pipe | null = null;
  private destroyed = false;

  constructor(
    private readonly proxy: LinkProxy,
    private readonly source: Socket,
  ) {}

  open(): void {
    this.source.on('error', () => this.destroy());
    // A side that closed still gets, and gives, what is queued for it (delay, slow link).
    this.source.on('close', () => (this.toTarget ?? IDLE).whenDrained(() => this.finish()));
    if (this.proxy.current.blackhole) {
      // Nothing is forwarded, so no connection is opened to the target.
      this.swallowed = true;
      this.source.on('data', (chunk: Buffer) => this.proxy.counted('bytesDiscarded', chunk.length));
      return;
    }
    const target = tcpConnect({ host: this.proxy.target.host, port: this.proxy.target.port });
    target.setNoDelay(true);
    this.target = target;
    // An unreachable target looks to the source like a peer that reset the connection.
    target.on('error', () => this.proxy.reset(this));
    target.on('close', () => (this.toSource ?? IDLE).whenDrained(() => this.finish()));
    this.toTarget = new Pipe(this.proxy, this.source, target, 'bytesToTarget');
    this.toSource = new Pipe(this.proxy, target, this.source, 'bytesToSource');
  }

  /** A blackhole began: what is queued is lost, and what arrives from now on too. */
  swallow(): void {
    this.swallowed = true;
    this.toTarget?.discardQueued();
    this.toSource?.discardQueued();
  }

  /** One side closed and the other has had everything: end both, without a reset. */
  finish(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.toTarget?.stop();
    this.toSource?.stop();
    this.source.end();
    this.target?.end();
    this.proxy.forget(this);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.toTarget?.stop();
    this.toSource?.stop();
    hardClose(this.source);
    if (this.target !== null) hardClose(this.target);
    this.proxy.forget(this);
  }
}

/** One direction of a relay: bytes in order, each piece delivered at its due time. */
class Pipe {
  private readonly queue: { atMs: number; chunk: Buffer }[] = [];
  private queuedBytes = 0;
  private lastDueMs = 0;
  private linkFreeAtMs = 0;
  private timer: NodeJS.Timeout | null = null;
  private ended = false;
  private paused = false;
  private drained: (() => void) | null = null;

  constructor(
    private readonly proxy: LinkProxy,
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly direction: 'bytesToTarget' | 'bytesToSource',
  ) {
    from.on('data', (chunk: Buffer) => this.arrived(chunk));
    from.on('end', () => {
      this.ended = true;
      this.pump();
    });
    to.on('drain', () => this.resumeIfRoom());
  }

  discardQueued(): void {
    for (const { chunk } of this.queue) this.proxy.counted('bytesDiscarded', chunk.length);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.resumeIfRoom();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.drained = null;
  }

  /** Calls `then` once nothing is queued (now, if nothing is). */
  whenDrained(then: () => void): void {
    if (this.queue.length === 0) then();
    else this.drained = then;
  }

  private arrived(chunk: Buffer): void {
    const faults = this.proxy.current;
    if (faults.blackhole) {
      this.proxy.counted('bytesDiscarded', chunk.length);
      return;
    }
    const nowMs = performance.now();
    const slow = Number.isFinite(faults.bytesPerSecond);
    const pieceBytes = slow ? SLOW_PIECE_BYTES : chunk.length;
    for (let offset = 0; offset < chunk.length; offset += pieceBytes) {
      const piece = chunk.subarray(offset, offset + pieceBytes);
      let sentMs = nowMs;
      if (slow) {
        sentMs =
          Math.max(nowMs, this.linkFreeAtMs) + (piece.length * 1_000) / faults.bytesPerSecond;
        this.linkFreeAtMs = sentMs;
      }
      // Never before an earlier piece, whatever the jitter drew: TCP keeps order.
      const dueMs = Math.max(sentMs + this.proxy.delayDrawMs(), this.lastDueMs);
      this.lastDueMs = dueMs;
      this.queue.push({ atMs: dueMs, chunk: piece });
      this.queuedBytes += piece.length;
    }
    if (this.queuedBytes + this.to.writableLength > BUFFERED_BYTES_MAX && !this.paused) {
      this.paused = true;
      this.from.pause();
    }
    this.pump();
  }

  private pump(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const nowMs = performance.now();
    for (let next = this.queue[0]; next !== undefined && next.atMs <= nowMs; next = this.queue[0]) {
      this.queue.shift();
      this.queuedBytes -= next.chunk.length;
      if (this.to.destroyed) continue;
      this.to.write(next.chunk);
      this.proxy.counted(this.direction, next.chunk.length);
    }
    const next = this.queue[0];
    if (next !== undefined) this.timer = setTimeout(() => this.pump(), next.atMs - nowMs);
    else {
      if (this.ended && !this.to.destroyed) this.to.end();
      const drained = this.drained;
      this.drained = null;
      drained?.();
    }
    this.resumeIfRoom();
  }

  private resumeIfRoom(): void {
    if (this.paused && this.queuedBytes + this.to.writableLength <= BUFFERED_BYTES_MAX / 2) {
      this.paused = false;
      this.from.resume();
    }
  }
}

const IDLE = { whenDrained: (then: () => void): void => then() };

/** A reset (RST), as a dead or cut peer causes; a plain destroy where that is not possible. */
function hardClose(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
