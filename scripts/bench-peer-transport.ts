import type { PeerMessage } from '../src/node/peer-message.ts';
import type { Transport } from '../src/node/transport.ts';
import { GrpcTransport } from '../src/transport/grpc.ts';
import { TcpTransport } from '../src/transport/tcp.ts';
import { type NodeId, nodeId } from '../src/util/ids.ts';
import { freePort } from '../test/support/free-port.ts';

/**
 * The peer transports alone, gRPC against TCP, both ends in this one process over
 * loopback (no Raft, no storage): CPU per message (this process's user+system time,
 * sender and receiver together) while messages stream in bursts, and the round trip of
 * one message answered at once (a leader→follower→leader hop, as an append and its
 * acknowledgement). After a warm-up the transports take turns, the order flipping every
 * round, so a neighbour's load on this shared machine falls on both alike.
 *
 *   node --import tsx scripts/bench-peer-transport.ts [--rounds N] [--messages N] [--burst N]
 */
const rounds = intArg('--rounds', 4, 1, 100);
const messages = intArg('--messages', 40_000, 100, 10_000_000);
/** Messages sent in one turn of the event loop (a leader appending to one follower sends 1–3). */
const burst = intArg('--burst', 2, 1, 1_000);
const pings = intArg('--pings', 2_000, 10, 1_000_000);
const ENTRY_BYTES = 120;

type Kind = 'grpc' | 'tcp';
const N1 = nodeId('n1');
const N2 = nodeId('n2');

function intArg(name: string, fallback: number, min: number, max: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < min || value > max) {
    process.stderr.write(`bench-peer-transport: ${name} must be an integer in ${min}..${max}\n`);
    process.exit(2);
  }
  return value;
}

/** Shaped like an AppendEntries of one client write; the transports do not look inside. */
function append(from: NodeId, to: NodeId, index: number): PeerMessage {
  return {
    kind: 'raft',
    message: {
      type: 'AppendEntries',
      from,
      to,
      term: 3,
      prevLogIndex: index - 1,
      prevLogTerm: 3,
      entries: [{ index, term: 3, data: new Uint8Array(ENTRY_BYTES) }],
      leaderCommit: index - 1,
    },
  } as unknown as PeerMessage;
}

async function pair(kind: Kind): Promise<[Transport, Transport]> {
  const [p1, p2] = [await freePort(), await freePort()];
  const peers = new Map([
    [N1, `127.0.0.1:${p1}`],
    [N2, `127.0.0.1:${p2}`],
  ]);
  const start = (id: NodeId, port: number): Promise<Transport> => {
    const common = {
      id,
      listenAddress: `127.0.0.1:${port}`,
      peers,
      queueMessagesMax: 1_024,
      batchMessagesMax: 256,
      reconnectDelayMsMin: 50,
      reconnectDelayMsMax: 2_000,
    };
    return kind === 'tcp'
      ? TcpTransport.start({
          ...common,
          frameBytesMax: 16 << 20,
          connectTimeoutMs: 2_000,
          frameTimeoutMs: 10_000,
          inboundConnectionsMax: 128,
        })
      : GrpcTransport.start(common);
  };
  return [await start(N1, p1), await start(N2, p2)];
}

interface Run {
  readonly kind: Kind;
  readonly cpuUsPerMessage: number;
  readonly messagesPerSecond: number;
  readonly rttP50Ms: number;
  readonly rttP99Ms: number;
}

/** Bursts from a to b, a new burst each turn of the loop while fewer than 4 are in flight. */
async function stream(a: Transport, b: Transport, count: number): Promise<number> {
  let received = 0;
  b.onMessage(() => received++);
  let sent = 0;
  await new Promise<void>((resolve) => {
    const step = (): void => {
      if (received >= count) {
        resolve();
        return;
      }
      // Bounded in flight, so no message is dropped by a full queue.
      if (sent - received < 4 * burst && sent < count) {
        for (let i = 0; i < burst && sent < count; i++) a.send(append(N1, N2, ++sent));
      }
      setImmediate(step);
    };
    step();
  });
  return received;
}

async function pingPong(a: Transport, b: Transport, count: number): Promise<number[]> {
  b.onMessage(() => b.send(append(N2, N1, 1)));
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    const sentAt = performance.now();
    await new Promise<void>((resolve) => {
      a.onMessage(() => resolve());
      a.send(append(N1, N2, i + 1));
    });
    rtts.push(performance.now() - sentAt);
  }
  return rtts;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

async function run(kind: Kind, transports: [Transport, Transport]): Promise<Run> {
  const [a, b] = transports;
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const received = await stream(a, b, messages);
  const wallMs = performance.now() - wallBefore;
  const cpu = process.cpuUsage(cpuBefore);
  const rtts = (await pingPong(a, b, pings)).sort((x, y) => x - y);
  return {
    kind,
    cpuUsPerMessage: (cpu.user + cpu.system) / received,
    messagesPerSecond: (received * 1_000) / wallMs,
    rttP50Ms: percentile(rtts, 0.5),
    rttP99Ms: percentile(rtts, 0.99),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const transports: Record<Kind, [Transport, Transport]> = {
  grpc: await pair('grpc'),
  tcp: await pair('tcp'),
};
process.stderr.write(`warm-up (${messages} messages each)\n`);
for (const kind of ['grpc', 'tcp'] as const) await run(kind, transports[kind]);
const runs: Run[] = [];
console.log(`burst ${burst}, ${messages} messages, ${pings} round trips per run`);
console.log('round kind  cpu µs/msg  msgs/s   rtt p50 ms  rtt p99 ms');
for (let round = 1; round <= rounds; round++) {
  const order: Kind[] = round % 2 === 1 ? ['grpc', 'tcp'] : ['tcp', 'grpc'];
  for (const kind of order) {
    const result = await run(kind, transports[kind]);
    runs.push(result);
    console.log(
      `${String(round).padEnd(5)} ${kind.padEnd(5)} ${result.cpuUsPerMessage.toFixed(2).padStart(10)}  ${result.messagesPerSecond.toFixed(0).padStart(7)}  ${result.rttP50Ms.toFixed(3).padStart(10)}  ${result.rttP99Ms.toFixed(3).padStart(10)}`,
    );
  }
}
for (const kind of ['grpc', 'tcp'] as const) {
  const mine = runs.filter((result) => result.kind === kind);
  console.log(
    `median ${kind.padEnd(5)} cpu ${median(mine.map((r) => r.cpuUsPerMessage)).toFixed(2)} µs/msg, ${median(mine.map((r) => r.messagesPerSecond)).toFixed(0)} msgs/s, rtt p50 ${median(mine.map((r) => r.rttP50Ms)).toFixed(3)} ms, p99 ${median(mine.map((r) => r.rttP99Ms)).toFixed(3)} ms`,
  );
}
await Promise.all(
  Object.values(transports)
    .flat()
    .map((transport) => transport.close()),
);
