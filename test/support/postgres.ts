import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/tools/free-port.ts';

/**
 * A throwaway PostgreSQL server for a test: initdb in a temporary directory, started
 * with pg_ctl on a loopback port, trust authentication for user `dlm`. initdb and the
 * server refuse to run as root, so as root they run as the `postgres` user (made by
 * Debian's postgresql package) through runuser. Without the binaries, or as root with
 * no `postgres` user, there is no server and the reason says why.
 */
export interface Postgres {
  /** A connection string for the `postgres` database. */
  readonly url: string;
  stop(): Promise<void>;
}

const LIB_DIR = '/usr/lib/postgresql';
const RUN_AS = 'postgres';
const COMMAND_TIMEOUT_MS = 60_000;

export async function startPostgres(): Promise<Postgres | { skipped: string }> {
  const bin = binDir();
  if (bin === null) {
    return {
      skipped: `PostgreSQL is not installed: no ${LIB_DIR}/<version>/bin/initdb (apt-get install postgresql)`,
    };
  }
  const asRoot = userInfo().uid === 0;
  let owner: { uid: number; gid: number } | null = null;
  if (asRoot) {
    owner = await userIds(RUN_AS);
    if (owner === null) {
      return { skipped: `running as root and there is no '${RUN_AS}' user to run PostgreSQL as` };
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'dlm-postgres-'));
  if (owner !== null) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, 'data');
  const run = (tool: string, args: readonly string[]): Promise<string> =>
    asRoot
      ? command('runuser', ['-u', RUN_AS, '--', join(bin, tool), ...args])
      : command(join(bin, tool), args);
  const pgCtl = (args: readonly string[]): Promise<string> =>
    run('pg_ctl', ['-D', data, '-w', '-t', '60', ...args]);
  try {
    await run('initdb', ['-D', data, '--auth=trust', '--username=dlm', '--no-sync', '-E', 'UTF8']);
    const port = await freePort();
    // fsync off: the data is thrown away; the socket lives in the temporary directory.
    const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off`;
    await pgCtl(['-o', options, '-l', join(dir, 'server.log'), 'start']);
    return {
      url: `postgres://dlm@127.0.0.1:${port}/postgres`,
      stop: async () => {
        await pgCtl(['-m', 'immediate', 'stop']).catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The bin directory of the newest PostgreSQL installed the Debian way, or null. */
function binDir(): string | null {
  if (!existsSync(LIB_DIR)) return null;
  const versions = readdirSync(LIB_DIR)
    .filter((name) => existsSync(join(LIB_DIR, name, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : join(LIB_DIR, versions[0], 'bin');
}

async function userIds(name: string): Promise<{ uid: number; gid: number } | null> {
  try {
    const [uid, gid] = await Promise.all([
      command('id', ['-u', name]),
      command('id', ['-g', name]),
    ]);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  } catch {
    return null;
  }
}

function command(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${file} ${args.join(' ')}: ${error.message}\n${stdout}${stderr}`));
    });
  });
}
