/**
 * What identities and authorization cost one client (issue 15): acquire+release pairs of
 * one TypeScript client (DlmClient, Session stream) against four clusters of `dlm serve`
 * processes running side by side:
 *
 * - plain:        plaintext, no auth section (open, as `npm start`);
 * - mtls:         mutual TLS, no auth section (sessions owned by the certificate's CN);
 * - mtls+authz:   mutual TLS and a policy (roles, per-prefix grants, per-identity limits);
 * - token+authz:  plaintext, the same policy, a sha-256 bearer token per call.
 *
 * After a warm-up of each, the variants take turns in blocks, the order rotating every
 * round, so a neighbour's load on this shared machine falls on all alike. Per variant it
 * prints the pair latency (p50, p99, mean) and the serving node's CPU per pair (user +
 * system from /proc/PID/stat over its blocks, idle ticks included: the same for all).
 *
 *   node --import tsx scripts/bench-authz.ts [--pairs 3000] [--warmup 1000] [--block 200] [--nodes 1]
 *     [--transport stream|unary]
 *
 * With --transport unary every call authenticates (the Session stream authenticates once).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { tokenEntry } from '../src/api/auth/tokens.ts';
import { initCertificates } from '../src/cli/certs.ts';
import { DlmClient, type Session } from '../src/client/index.ts';
import { ProcessCluster } from '../src/tools/process-cluster.ts';

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '1000' },
    block: { type: 'string', default: '200' },
    nodes: { type: 'string', default: '1' },
    transport: { type: 'string', default: 'stream' },
  },
});
const pairsPerVariant = bounded('pairs', 100, 1_000_000);
const warmupPairs = bounded('warmup', 0, 1_000_000);
const blockPairs = bounded('block', 10, 100_000);
const nodeCount = bounded('nodes', 1, 5);
// stream: one Lock.Session stream, authenticated once; unary: every call authenticates.
const transport = values.transport === 'unary' ? 'unary' : 'stream';
const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux
const TOKEN = 'bench-token-not-a-secret-0123456789';

function bounded(name: keyof typeof values, min: number, max: number): number {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < min || value > max) {
    process.stderr.write(`bench-authz: --${name} must be an integer in ${min}..${max}\n`);
    process.exit(2);
  }
  return value;
}

function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1_000) / TICKS_PER_SECOND;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

interface Variant {
  readonly name: string;
  readonly cluster: ProcessCluster;
  client: DlmClient | null;
  session: Session | null;
  leaderPid: number;
  readonly latenciesMs: number[];
  cpuMs: number;
  measuredPairs: number;
}

const POLICY = {
  roles: { bench: [{ prefix: 'bench/', grant: ['read', 'lock'] }] },
  identities: { bench: ['bench'] },
  limits: { sessionsPerIdentityMax: 100, locksHeldPerIdentityMax: 100, waitersPerIdentityMax: 100 },
};

/**
 * The authorization path alone, in this process: what each call adds on the node
 * (authenticate from metadata or certificate, then one policy check), without the noise
 * of a whole acquire+release. Alternates the two identity sources, after a warm-up.
 */
async function microCost(): Promise<void> {
  const { Authenticator } = await import('../src/api/auth/caller.ts');
  const { requirePermission } = await import('../src/api/auth/guard.ts');
  const { parseClusterConfig } = await import('../src/config/index.ts');
  const nodes = [
    {
      id: 'n1',
      peerAddress: '127.0.0.1:1',
      clientAddress: '127.0.0.1:2',
      metricsAddress: '127.0.0.1:3',
    },
  ];
  const auth = { ...POLICY, tokens: [await tokenEntry('bench', TOKEN, 'sha256')] };
  const config = parseClusterConfig({ nodes, dataDir: 'd', auth }, tmpdir());
  const authenticator = new Authenticator(config.auth);
  const tokenCall = { metadata: new grpc.Metadata() };
  tokenCall.metadata.set('authorization', `Bearer ${TOKEN}`);
  const certCall = {
    metadata: new grpc.Metadata(),
    getAuthContext: () => ({ sslPeerCertificate: { subject: { CN: 'bench' } } as never }),
  };
  const once = async (call: typeof tokenCall): Promise<void> => {
    const caller = await authenticator.authenticate(call);
    requirePermission(authenticator, caller, 'lock', 'bench/lock');
  };
  const time = async (call: typeof tokenCall, n: number): Promise<number> => {
    const startedMs = performance.now();
    for (let i = 0; i < n; i++) await once(call);
    return ((performance.now() - startedMs) * 1_000) / n;
  };
  await time(tokenCall, 20_000);
  await time(certCall, 20_000);
  const tokenUs: number[] = [];
  const certUs: number[] = [];
  for (let round = 0; round < 10; round++) {
    tokenUs.push(await time(tokenCall, 10_000));
    certUs.push(await time(certCall, 10_000));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? Number.NaN;
  process.stdout.write(
    `authorization path in-process, median of 10 rounds of 10,000 calls: bearer token ${median(tokenUs).toFixed(2)} µs/call, client certificate ${median(certUs).toFixed(2)} µs/call\n`,
  );
}

async function main(): Promise<void> {
  const certs = mkdtempSync(join(tmpdir(), 'dlm-bench-authz-'));
  // As `dlm certs init --nodes n1,n2,n3 --clients bench` writes them.
  initCertificates({
    outDir: certs,
    nodes: ['n1', 'n2', 'n3'].map((id) => ({ id, sans: ['IP:127.0.0.1', 'DNS:localhost'] })),
    clients: ['bench'],
    days: 2,
  });
  const pem = (name: string) => readFileSync(join(certs, name));
  const tls = {
    caFile: join(certs, 'ca.pem'),
    certFile: join(certs, 'nodes/{node}.pem'),
    keyFile: join(certs, 'nodes/{node}-key.pem'),
  };
  const mtls = grpc.credentials.createSsl(
    pem('ca.pem'),
    pem('clients/bench-key.pem'),
    pem('clients/bench.pem'),
  );
  const tokenPolicy = { ...POLICY, tokens: [await tokenEntry('bench', TOKEN, 'sha256')] };
  const specs = [
    { name: 'plain', extra: {}, credentials: grpc.credentials.createInsecure(), token: false },
    { name: 'mtls', extra: { tls }, credentials: mtls, token: false },
    { name: 'mtls+authz', extra: { tls, auth: POLICY }, credentials: mtls, token: false },
    {
      name: 'token+authz',
      extra: { auth: tokenPolicy },
      credentials: grpc.credentials.createInsecure(),
      token: true,
    },
  ];
  const variants: Variant[] = [];
  let failed = false;
  try {
    for (const spec of specs) {
      const cluster = await ProcessCluster.create(nodeCount, spec.extra);
      cluster.credentials = spec.credentials;
      if (spec.token) {
        const { bearerInterceptor } = await import('../src/client/bearer.ts');
        cluster.clientOptions = { interceptors: [bearerInterceptor(TOKEN)] };
      }
      const variant: Variant = {
        name: spec.name,
        cluster,
        client: null,
        session: null,
        leaderPid: 0,
        latenciesMs: [],
        cpuMs: 0,
        measuredPairs: 0,
      };
      variants.push(variant);
      cluster.startAll();
      process.stderr.write(`${spec.name}: starting ${nodeCount} node(s) in ${cluster.dir}\n`);
      const leader = await cluster.waitForLeader(60_000);
      variant.leaderPid = cluster.pid(leader) ?? 0;
      const address = cluster.nodes.find((node) => node.id === leader)?.clientAddress ?? '';
      variant.client = new DlmClient({
        endpoints: [address],
        credentials: spec.credentials,
        transport,
        ...(spec.token ? { token: TOKEN } : {}),
      });
      variant.session = await variant.client.openSession({ ttlMs: 60_000, clientName: spec.name });
    }
    for (const variant of variants) await run(variant, warmupPairs, false);
    const rounds = Math.ceil(pairsPerVariant / blockPairs);
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(round + k) % variants.length];
        if (variant !== undefined) await run(variant, blockPairs, true);
      }
    }
    report(variants);
    await microCost();
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    for (const variant of variants) {
      await variant.session?.close().catch(() => {});
      variant.client?.close();
      await variant.cluster.stopAll();
      // A failed run keeps the nodes' logs (the error names their folder).
      if (!failed) variant.cluster.remove();
    }
    rmSync(certs, { recursive: true, force: true });
  }
}

async function run(variant: Variant, pairs: number, measured: boolean): Promise<void> {
  const session = variant.session;
  if (session === null) throw new Error(`${variant.name} has no session`);
  const cpuBefore = processCpuMs(variant.leaderPid);
  for (let i = 0; i < pairs; i++) {
    const startedMs = performance.now();
    const handle = await session.acquire('bench/lock');
    await handle.release();
    if (measured) variant.latenciesMs.push(performance.now() - startedMs);
  }
  if (!measured) return;
  variant.cpuMs += processCpuMs(variant.leaderPid) - cpuBefore;
  variant.measuredPairs += pairs;
}

function report(variants: readonly Variant[]): void {
  const base = variants[0];
  const baseP50 = percentile(
    [...(base?.latenciesMs ?? [])].sort((a, b) => a - b),
    50,
  );
  const baseCpu = (base?.cpuMs ?? 0) / Math.max(1, base?.measuredPairs ?? 1);
  process.stdout.write(
    `${nodeCount}-node clusters, ${transport} calls, ${pairsPerVariant} measured acquire+release pairs per variant in blocks of ${blockPairs}, after ${warmupPairs} warm-up pairs each\n`,
  );
  process.stdout.write(
    'variant       p50 ms  p99 ms  mean ms  leader CPU ms/pair  p50 vs plain  CPU vs plain\n',
  );
  for (const variant of variants) {
    const sorted = [...variant.latenciesMs].sort((a, b) => a - b);
    const mean = sorted.reduce((sum, x) => sum + x, 0) / Math.max(1, sorted.length);
    const cpu = variant.cpuMs / Math.max(1, variant.measuredPairs);
    const p50 = percentile(sorted, 50);
    process.stdout.write(
      `${variant.name.padEnd(12)}  ${p50.toFixed(2).padStart(6)}  ${percentile(sorted, 99).toFixed(2).padStart(6)}  ${mean.toFixed(2).padStart(7)}  ${cpu.toFixed(3).padStart(18)}  ${`${((p50 / baseP50 - 1) * 100).toFixed(1)} %`.padStart(12)}  ${`${((cpu / baseCpu - 1) * 100).toFixed(1)} %`.padStart(12)}\n`,
    );
  }
}

await main().catch((error: unknown) => {
  process.exitCode = 1;
  process.stderr.write(`bench-authz: ${error instanceof Error ? error.message : String(error)}\n`);
});
