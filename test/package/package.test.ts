import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * The package as a user gets it: `npm pack`, installed from the tarball into a fresh
 * project, its client used from plain JavaScript against a cluster of the installed
 * package's own `dlm serve` (compiled code, no src/, no tsx), and its types checked
 * from a small TypeScript consumer.
 *
 * The install is offline: only the tarball's dependencies are needed, and the consumer
 * gets them through a lockfile made from this repo's (same versions, same integrity),
 * so `npm ci --offline` takes them from the npm cache that `npm ci` filled here.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONSUMER_FIXTURE = fileURLToPath(new URL('./consumer/use-client.js', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

const work = mkdtempSync(join(tmpdir(), 'dlm-package-'));
const project = join(work, 'consumer');
let cluster: ProcessCluster | null = null;

afterAll(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  rmSync(work, { recursive: true, force: true });
});

interface Run {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to completion; its failure names the command and what it printed.
 * Without this test's parent npm's variables (`npm test` sets npm_package_*,
 * npm_config_local_prefix…), which would point the child npm back at this repo.
 */
function run(file: string, args: readonly string[], cwd: string): Promise<Run> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([key]) => !key.startsWith('npm_') || key === 'npm_config_cache',
    ),
  );
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, env, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error === null) resolve({ stdout, stderr });
      // tsc prints its diagnostics on stdout.
      else
        reject(
          new Error(`${file} ${args.join(' ')} in ${cwd}: ${error.message}\n${stdout}${stderr}`),
        );
    });
  });
}

/**
 * `npm ci` from the npm cache. Where this repo's dependencies were not installed by npm
 * (so the cache lacks them), it falls back to the registry, saying so.
 */
async function installOffline(dir: string): Promise<void> {
  const args = ['ci', '--no-audit', '--no-fund'];
  try {
    await run('npm', [...args, '--offline'], dir);
  } catch (error) {
    if (!String(error).includes('ENOTCACHED')) throw error;
    process.stderr.write('test/package: the npm cache lacks a dependency; installing online\n');
    await run('npm', [...args, '--prefer-offline'], dir);
  }
}

type LockPackages = Record<string, Record<string, unknown>>;

/**
 * The consumer's package-lock.json: the tarball, and this repo's lock entries for what
 * is not a dev dependency, which are exactly the tarball's dependency tree.
 */
function consumerLock(tarball: string): object {
  const repoLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: LockPackages;
  };
  const repoRoot = repoLock.packages[''];
  if (repoRoot === undefined) throw new Error('package-lock.json has no root package entry');
  const packages: LockPackages = {
    '': { name: 'consumer', dependencies: { dlm: `file:${tarball}` } },
    'node_modules/dlm': {
      version: repoRoot.version,
      resolved: `file:${tarball}`,
      dependencies: repoRoot.dependencies,
      bin: repoRoot.bin,
      engines: repoRoot.engines,
    },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (path !== '' && entry.dev !== true) packages[path] = entry;
  }
  return { name: 'consumer', lockfileVersion: 3, requires: true, packages };
}

/** A TypeScript user's file: it must compile, and the @ts-expect-error must be needed. */
const TYPED_CONSUMER = `
import { DlmClient, FenceGuard, type LockHandle, type Session } from 'dlm/client';

const client = new DlmClient({ endpoints: ['127.0.0.1:7101'] });
const session: Session = await client.openSession({ ttlMs: 10_000, clientName: 'typed' });
const handle: LockHandle = await session.acquire('typed', { waitMs: 0, mode: 'SHARED' });
const token: string = handle.token;
// @ts-expect-error a fencing token is a decimal string (a uint64), not a number
const wrong: number = handle.token;
const admitted: boolean = new FenceGuard().admit('typed', handle.token);
console.log(token, wrong, session.signal.aborted, admitted);
`;

const TYPED_CONSUMER_TSCONFIG = {
  compilerOptions: {
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    target: 'ES2022',
    strict: true,
    noEmit: true,
    // The package's own types are checked; its dependencies' are theirs to check.
    skipLibCheck: true,
    types: ['node'],
    // @types/node is a dev dependency of this repo, not of the package.
    typeRoots: [join(ROOT, 'node_modules/@types')],
  },
  files: ['typed.ts'],
};

describe('the npm package', () => {
  it('packs, installs offline into a fresh project, and its client and bin work from plain JavaScript', async () => {
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], ROOT);
    const [manifest] = JSON.parse(packed.stdout) as {
      filename: string;
      files: { path: string }[];
    }[];
    if (manifest === undefined) throw new Error(`npm pack printed no manifest: ${packed.stdout}`);
    const paths = manifest.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'bin/dlm',
        'dist/cli/main.js',
        'dist/client/index.js',
        'dist/client/index.d.ts',
        'proto/dlm.proto',
        'proto/raft.proto',
        'console/index.html',
        'console/console.js',
        'console/console.css',
      ]),
    );
    const unwanted = paths.filter(
      (path) =>
        /^(src|test|scripts|examples|node_modules)\//.test(path) || /(?<!\.d)\.ts$/.test(path),
    );
    expect(unwanted).toEqual([]);

    // The project: the tarball as its one dependency, installed the way users do.
    mkdirSync(project);
    const tarball = join(work, manifest.filename);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'consumer',
        private: true,
        type: 'module',
        dependencies: { dlm: `file:${tarball}` },
      }),
    );
    writeFileSync(join(project, 'package-lock.json'), JSON.stringify(consumerLock(tarball)));
    await installOffline(project);
    const installed = join(project, 'node_modules/dlm');
    expect(existsSync(join(installed, 'src'))).toBe(false);

    // Only what `exports` names is reachable.
    const deepImport = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import('dlm/dist/cli/cli.js').catch((e) => console.log(e.code))",
      ],
      project,
    );
    expect(deepImport.stdout.trim()).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');

    // The types, checked while the cluster starts.
    writeFileSync(join(project, 'typed.ts'), TYPED_CONSUMER);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TYPED_CONSUMER_TSCONFIG));
    const typecheck = run(process.execPath, [TSC, '-p', 'tsconfig.json'], project);

    // A cluster of the installed bin: it runs the shipped dist/ and never builds.
    cluster = await ProcessCluster.create(3);
    cluster.startAll({ command: [join(project, 'node_modules/.bin/dlm')] });
    await Promise.all([typecheck, cluster.waitForLeader(30_000)]);

    copyFileSync(CONSUMER_FIXTURE, join(project, 'use-client.js'));
    const endpoints = cluster.nodes.map((node) => node.clientAddress).join(',');
    const used = await run(process.execPath, ['use-client.js', endpoints], project);
    const seen = JSON.parse(used.stdout) as {
      sessionId: string;
      firstToken: string;
      secondToken: string;
      holdersWhileHeld: { sessionId: string; owner: string; token: string }[];
      holdersAfterRelease: unknown[];
      firstValidWhileHeld: boolean;
      firstValidAfterSecond: boolean;
      errorClassExported: boolean;
      fenceAdmitted: boolean[];
      staleRefusal: string | null;
    };
    expect(seen.firstToken).toMatch(/^[1-9][0-9]*$/);
    expect(BigInt(seen.secondToken)).toBeGreaterThan(BigInt(seen.firstToken));
    expect(seen.holdersWhileHeld).toEqual([
      { sessionId: seen.sessionId, owner: 'first', token: seen.firstToken },
    ]);
    expect(seen.holdersAfterRelease).toEqual([]);
    expect(seen.firstValidWhileHeld).toBe(true);
    expect(seen.firstValidAfterSecond).toBe(false);
    expect(seen.errorClassExported).toBe(true);
    expect(seen.fenceAdmitted).toEqual([true, true]);
    expect(seen.staleRefusal).toBe(
      `package/test: write under fencing token ${seen.firstToken} refused, token ${seen.secondToken} was seen already (a later grant of the lock; this holder lost it)`,
    );

    // The web console's page ships too: the installed node serves it.
    const page = await fetch(`http://${cluster.nodes[0]?.metricsAddress}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="/console.js"');

    for (const node of cluster.nodes) {
      expect(readFileSync(cluster.logPath(node.id), 'utf8')).not.toContain('building dist/');
    }
    expect(existsSync(join(installed, '.build'))).toBe(false);
  });
});
