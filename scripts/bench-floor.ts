import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Level } from 'level';
import { mainThreadPreemptions, processCpuMs } from '../src/tools/bench/proc-cpu.ts';
import { parseIntFlags } from './int-flags.ts';

/**
 * The least a replicated write can cost on this host, with the pieces dlm is built from
 * and nothing else: a client process sends a write on a grpc-js stream to a leader
 * process; the leader sends it to two follower processes over TCP and writes it to
 * LevelDB (synced) at the same time; each follower writes it (synced) and acknowledges;
 * the leader answers once its own write and one follower's are durable. No Raft, no
 * lock state, no checks, no metrics, no logging: every real write does at least this.
 *
 * Why (issue 12): its targets ask for one client at twice etcd's pairs/s and a hot lock
 * at three times etcd's hand-offs. A lock pair is two such writes, and a hot-lock
 * hand-off at least one write and one message to the next holder. This script says what
 * the host allows for them, so that a target below its floor is seen as such.
 *
 *   node --import tsx scripts/bench-floor.ts [--clients N] [--warmup N] [--seconds S] [--rounds R]
 *
 * Each client loops write → answer → write on its own stream. The processes are real
 * and separate, as a cluster and its load generator are; the databases live under
 * os.tmpdir() and are removed at the end.
 */
const FLAGS = { '--clients': 1, '--warmup': 3_000, '--seconds': 8, '--rounds': 3 } as const;
const ENTRY_BYTES = 120;
const SELF = fileURLToPath(import.meta.url);

interface ClientReport {
  readonly writes: number;
  readonly seconds: number;
  readonly latencyMs: readonly number[];
}

type Role =
  | { readonly role: 'follower'; readonly dir: string }
  | { readonly role: 'leader'; readonly dir: string; readonly followerPorts: readonly number[] }
  | {
      readonly role: 'client';
      readonly leaderPort: number;
      readonly clients: number;
      readonly warmup: number;
      readonly seconds: number;
    };

const STREAM_PATH = '/floor.Floor/Write';
const passThrough = {
  path: STREAM_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: (value: Buffer) => value,
  requestDeserialize: (value: Buffer) => value,
  responseSerialize: (value: Buffer) => value,
  responseDeserialize: (value: Buffer) => value,
} as const;

/** A length-prefixed frame reader: calls `onFrame` with each whole frame's body. */
function readFrames(socket: Socket, onFrame: (body: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0);
      if (pending.length < 4 + length) break;
      onFrame(pending.subarray(4, 4 + length));
      pending = pending.subarray(4 + length);
    }
  });
}

function frame(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function keyOf(index: number): Buffer {
  const key = Buffer.allocUnsafe(8);
  key.writeBigUInt64BE(BigInt(index));
  return key;
}

async function openDb(dir: string): Promise<Level<Buffer, Buffer>> {
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  return db;
}

/** Tells the parent this process listens on `port`. */
function ready(port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

/** A follower: each frame is [index u64][entries]; written synced as one batch, then acked. */
async function follower(dir: string): Promise<void> {
  const db = await openDb(dir);
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    readFrames(socket, (body) => {
      const index = Number(body.readBigUInt64BE(0));
      const value = Buffer.from(body.subarray(8));
      void db.batch([{ type: 'put', key: keyOf(index), value }], { sync: true }).then(() => {
        socket.write(frame(body.subarray(0, 8)));
      });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (typeof address === 'object' && address !== null) ready(address.port);
  });
}

/**
 * The leader: writes gathered over one turn of the event loop go out as one entry batch
 * (as dlm's Ready loop does), sent to both followers before its own synced write starts.
 * A batch is answered when its own write and one follower's acknowledgement are in.
 */
async function leader(dir: string, followerPorts: readonly number[]): Promise<void> {
  const db = await openDb(dir);
  const peers = await Promise.all(followerPorts.map(connectPeer));
  let nextIndex = 1;
  let gathered: Array<grpc.ServerDuplexStream<Buffer, Buffer>> = [];
  const waiting = new Map<number, { acks: number; durable: boolean; callers: typeof gathered }>();
  const settle = (index: number): void => {
    const batch = waiting.get(index);
    if (batch === undefined || !batch.durable || batch.acks < 1) return;
    waiting.delete(index);
    const answer = keyOf(index);
    for (const caller of batch.callers) caller.write(answer);
  };
  for (const peer of peers) {
    readFrames(peer, (body) => {
      const index = Number(body.readBigUInt64BE(0));
      const batch = waiting.get(index);
      if (batch === undefined) return;
      batch.acks++;
      settle(index);
    });
  }
  const flush = (): void => {
    const callers = gathered;
    gathered = [];
    const index = nextIndex++;
    const entries = Buffer.alloc(ENTRY_BYTES * callers.length, 0x61);
    const body = Buffer.concat([keyOf(index), entries]);
    waiting.set(index, { acks: 0, durable: false, callers });
    const out = frame(body);
    for (const peer of peers) peer.write(out);
    void db.batch([{ type: 'put', key: keyOf(index), value: entries }], { sync: true }).then(() => {
      const batch = waiting.get(index);
      if (batch === undefined) return;
      batch.durable = true;
      settle(index);
    });
  };
  const server = new grpc.Server();
  server.addService(
    { Write: passThrough },
    {
      Write: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', () => {
          if (gathered.length === 0) setImmediate(flush);
          gathered.push(call);
        });
        call.on('end', () => call.end());
      },
    },
  );
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error !== null) throw error;
    ready(port);
  });
}

function connectPeer(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => resolve(socket));
    socket.setNoDelay(true);
    socket.once('error', reject);
  });
}

/** `clients` loops, each on its own stream: write, wait for the answer, again. */
async function client(role: Extract<Role, { role: 'client' }>): Promise<void> {
  const Client = grpc.makeGenericClientConstructor({ Write: passThrough }, 'Floor');
  const stub = new Client(`127.0.0.1:${role.leaderPort}`, grpc.credentials.createInsecure());
  const streams = Array.from({ length: role.clients }, () =>
    (stub as unknown as { Write: () => grpc.ClientDuplexStream<Buffer, Buffer> }).Write(),
  );
  const request = Buffer.alloc(ENTRY_BYTES, 0x62);
  let total = 0;
  let measuring = false;
  const latencyMs: number[] = [];
  const loop = (stream: grpc.ClientDuplexStream<Buffer, Buffer>, stop: () => boolean) =>
    new Promise<void>((resolve) => {
      let sentAt = 0;
      const send = (): void => {
        if (stop()) {
          stream.off('data', onAnswer);
          resolve();
          return;
        }
        sentAt = performance.now();
        stream.write(request);
      };
      const onAnswer = (): void => {
        total++;
        if (measuring) latencyMs.push(performance.now() - sentAt);
        send();
      };
      stream.on('data', onAnswer);
      send();
    });
  await Promise.all(streams.map((stream) => loop(stream, () => total >= role.warmup)));
  process.stdout.write('{"warm":true}\n');
  measuring = true;
  const startedAt = performance.now();
  const endAt = startedAt + role.seconds * 1000;
  const before = total;
  await Promise.all(streams.map((stream) => loop(stream, () => performance.now() >= endAt)));
  const report: ClientReport = {
    writes: total - before,
    seconds: (performance.now() - startedAt) / 1000,
    latencyMs,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  for (const stream of streams) stream.end();
  stub.close();
}

async function runRole(role: Role): Promise<void> {
  if (role.role === 'follower') return follower(role.dir);
  if (role.role === 'leader') return leader(role.dir, role.followerPorts);
  return client(role);
}

/** Starts this script in `role`; `next()` resolves with each line it prints, in turn. */
function start(role: Role): { child: ChildProcess; next: () => Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF], {
    env: { ...process.env, DLM_BENCH_FLOOR_ROLE: JSON.stringify(role) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[
    Symbol.asyncIterator
  ]();
  const next = async (): Promise<string> => {
    const line = await lines.next();
    if (line.done === true) throw new Error(`bench-floor ${role.role} exited (${child.exitCode})`);
    return line.value;
  };
  return { child, next };
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const args = parseIntFlags('bench-floor', process.argv.slice(2), FLAGS, 10_000);
  const dir = await mkdtemp(join(tmpdir(), 'dlm-bench-floor-'));
  const children: ChildProcess[] = [];
  try {
    const followers = [1, 2].map((n) => start({ role: 'follower', dir: join(dir, `f${n}`) }));
    children.push(...followers.map((f) => f.child));
    const followerPorts = await Promise.all(
      followers.map(async (f) => JSON.parse(await f.next()).port),
    );
    const leaderProcess = start({ role: 'leader', dir: join(dir, 'leader'), followerPorts });
    children.push(leaderProcess.child);
    const leaderPort = JSON.parse(await leaderProcess.next()).port as number;
    const servers = [leaderProcess.child, ...followers.map((f) => f.child)];
    console.log(
      `floor: ${args['--clients']} client(s); ${args['--warmup']} warm-up writes, then ${args['--seconds']} s, ${args['--rounds']} rounds`,
    );
    console.log(
      'round  writes/s  pairs/s  write p50 ms  p99 ms  server CPU ms/write (leader + followers)  preempted/write',
    );
    for (let round = 1; round <= args['--rounds']; round++) {
      const clientProcess = start({
        role: 'client',
        leaderPort,
        clients: args['--clients'],
        warmup: round === 1 ? args['--warmup'] : 500,
        seconds: args['--seconds'],
      });
      await clientProcess.next();
      const cpuBefore = servers.map((child) => processCpuMs(child.pid ?? 0));
      const preemptBefore = servers.map((child) => mainThreadPreemptions(child.pid ?? 0));
      const report = JSON.parse(await clientProcess.next()) as ClientReport;
      const cpuMs = servers.map((child, i) => processCpuMs(child.pid ?? 0) - (cpuBefore[i] ?? 0));
      const preempted = servers.map(
        (child, i) => mainThreadPreemptions(child.pid ?? 0) - (preemptBefore[i] ?? 0),
      );
      const sorted = [...report.latencyMs].sort((a, b) => a - b);
      const perSecond = report.writes / report.seconds;
      const perWrite = (values: number[], digits: number) =>
        values.map((value) => (value / report.writes).toFixed(digits)).join(' + ');
      console.log(
        [
          String(round).padStart(5),
          perSecond.toFixed(0).padStart(9),
          (perSecond / 2).toFixed(0).padStart(8),
          percentile(sorted, 0.5).toFixed(3).padStart(13),
          percentile(sorted, 0.99).toFixed(3).padStart(7),
          perWrite(cpuMs, 3).padStart(40),
          perWrite(preempted, 2).padStart(16),
        ].join(' '),
      );
      await new Promise((resolve) => clientProcess.child.once('exit', resolve));
    }
    console.log(
      'A lock pair is two writes; a hot-lock hand-off is at least one write plus one message to the next holder.',
    );
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

const roleText = process.env.DLM_BENCH_FLOOR_ROLE;
if (roleText === undefined) {
  await main();
} else {
  await runRole(JSON.parse(roleText) as Role);
}
