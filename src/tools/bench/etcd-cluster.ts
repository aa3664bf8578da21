import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { EtcdClient } from './etcd-client.ts';
import { freePort, spawnLogged, stopProcesses } from './processes.ts';
import type { ServerCluster, ServerMember } from './server-cluster.ts';

/**
 * A 3-member etcd cluster on loopback for the comparison, with its data under the
 * run's temp dir. The bench installs nothing: without an etcd binary it says how to
 * get one.
 */
const MEMBERS = 3;
/** A bench cluster's data is thrown away: a clean shutdown is not worth a long wait. */
const STOP_GRACE_MS = 5_000;
const STATUS_TIMEOUT_MS = 1_000;

export const ETCD_INSTALL_HINT =
  'install etcd 3.4 (Debian/Ubuntu: `sudo apt-get install -y etcd-server`, which gives ' +
  '/usr/bin/etcd) or pass --etcd-bin PATH';

/** The etcd binary to run: `explicit`, else `etcd` on PATH, else /usr/bin/etcd. */
export function findEtcd(explicit: string | null): string {
  const candidates =
    explicit !== null
      ? [explicit]
      : [
          ...(process.env.PATH ?? '')
            .split(delimiter)
            .filter(Boolean)
            .map((dir) => join(dir, 'etcd')),
          '/usr/bin/etcd',
        ];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not there or not executable: try the next.
    }
  }
  const where = explicit !== null ? `${explicit} is not an executable file` : 'no etcd on PATH';
  throw new Error(`--compare etcd: ${where}; ${ETCD_INSTALL_HINT}`);
}

/** `etcd --version`'s first line, e.g. "etcd Version: 3.4.23". */
export function etcdVersion(binary: string): string {
  const output = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return output.split('\n')[0]?.trim() ?? 'unknown';
}

export async function startEtcdCluster(binary: string, dir: string): Promise<ServerCluster> {
  const specs = [];
  for (let i = 1; i <= MEMBERS; i++) {
    specs.push({
      name: `etcd${i}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      clientUrl: `http://127.0.0.1:${await freePort()}`,
    });
  }
  const initialCluster = specs.map((spec) => `${spec.name}=${spec.peerUrl}`).join(',');
  const children = specs.map((spec) =>
    spawnLogged(
      binary,
      [
        `--name=${spec.name}`,
        `--data-dir=${join(dir, spec.name)}`,
        `--listen-peer-urls=${spec.peerUrl}`,
        `--initial-advertise-peer-urls=${spec.peerUrl}`,
        `--listen-client-urls=${spec.clientUrl}`,
        `--advertise-client-urls=${spec.clientUrl}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-token=dlm-bench',
        '--initial-cluster-state=new',
        '--logger=zap',
      ],
      join(dir, `${spec.name}.log`),
    ),
  );
  const members = specs.map((spec, i) => ({
    name: spec.name,
    clientAddress: spec.clientUrl.slice('http://'.length),
    pid: children[i]?.pid ?? null,
  }));
  return new EtcdCluster(members, children);
}

class EtcdCluster implements ServerCluster {
  readonly system = 'etcd' as const;
  private readonly clients: EtcdClient[];

  constructor(
    readonly members: readonly ServerMember[],
    private readonly children: readonly ChildProcess[],
  ) {
    this.clients = members.map((member) => new EtcdClient(member.clientAddress));
  }

  /** etcd names members by numeric id: each member says its own id and the leader's. */
  async leader(): Promise<string | null> {
    const statuses = await Promise.all(
      this.clients.map((client) => client.status(STATUS_TIMEOUT_MS).catch(() => null)),
    );
    const leaderId = statuses.find(
      (status) => status !== null && status.leaderId !== '0',
    )?.leaderId;
    if (leaderId === undefined) return null;
    const index = statuses.findIndex((status) => status?.memberId === leaderId);
    return this.members[index]?.name ?? null;
  }

  /**
   * Followers first, then the leader: a leader told to stop hands leadership to a live
   * follower and waits for it, which takes the whole grace if that follower is
   * stopping too; once no follower is connected, it just stops.
   */
  async stop(): Promise<void> {
    const leader = await this.leader().catch(() => null);
    for (const client of this.clients) client.close();
    const isLeader = (i: number): boolean => this.members[i]?.name === leader;
    await stopProcesses(
      this.children.filter((_, i) => !isLeader(i)),
      STOP_GRACE_MS,
    );
    await stopProcesses(this.children, STOP_GRACE_MS);
  }
}
