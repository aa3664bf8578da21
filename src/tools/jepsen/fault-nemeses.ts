import { join } from 'node:path';
import type { Prng } from '../../util/prng.ts';
import type { ProcessCluster } from '../process-cluster.ts';
import type { Violation } from './checker.ts';
import { ClientWorker, type WorkerConfig } from './client-worker.ts';
import { CorruptRecordNemesis } from './corrupt-record.ts';
import { DiskFullNemesis, NODE_DISK_BYTES } from './disk-full.ts';
import type { History, NemesisEvent } from './history.ts';
import { LogArchive } from './log-archive.ts';
import { Members } from './members.ts';
import { MembershipNemesis } from './membership.ts';
import { NodeDisks } from './node-disks.ts';
import type { CheckerVerdict } from './summary.ts';
import type { NemesisStop } from './waits.ts';

/**
 * The nemeses that check what they did themselves, gathered for run.ts: disk full,
 * corrupt record, membership changes and the client worker the client-pause nemesis
 * stops. Each has a module of its own; this one sets them up, runs them, and collects
 * their verdicts and violations.
 */

/** Nodes the membership nemesis adds to the founders and removes again (3 → 5 → 3). */
const MEMBERSHIP_SPARES = 2;

/** Faults that hit one node, drawn by the run's nemesis loop like kill and pause. */
export type NodeFault = 'disk-full' | 'corrupt';

export class FaultNemeses {
  readonly members: Members;
  /** The logs the membership nemesis wiped, for the replay from the bootstrap. */
  readonly logArchive: LogArchive;
  private readonly diskFull: DiskFullNemesis | null;
  private readonly corrupt: CorruptRecordNemesis | null;
  private readonly membership: MembershipNemesis | null;
  private worker: ClientWorker | null = null;

  private constructor(
    private readonly cluster: ProcessCluster,
    private readonly disks: NodeDisks | null,
    enabled: ReadonlySet<string>,
    events: NemesisEvent[],
  ) {
    this.members = new Members(cluster.founders.map((node) => node.id));
    this.logArchive = new LogArchive(join(cluster.dir, 'log-archive'));
    this.diskFull =
      disks === null ? null : new DiskFullNemesis(cluster, disks, this.members, events);
    this.corrupt = enabled.has('corrupt')
      ? new CorruptRecordNemesis(cluster, this.members, events)
      : null;
    this.membership = enabled.has('membership')
      ? new MembershipNemesis(
          cluster,
          this.members,
          events,
          cluster.founders.length,
          this.logArchive,
        )
      : null;
  }

  /** How many nodes the cluster needs: the founders, and spares for the membership nemesis. */
  static clusterSize(founders: number, enabled: ReadonlySet<string>): number {
    return founders + (enabled.has('membership') ? MEMBERSHIP_SPARES : 0);
  }

  /**
   * Before any node starts: a tmpfs per node for disk-full (then every node logs each
   * call it answers, which is how the nemesis sees what it acknowledged), or the reason
   * it cannot run, which the run reports as skipped.
   */
  static prepare(
    cluster: ProcessCluster,
    enabled: ReadonlySet<string>,
    events: NemesisEvent[],
  ): { faults: FaultNemeses; skipped: { nemesis: 'disk-full'; reason: string }[] } {
    const dirs = new Map(cluster.nodes.map((node) => [node.id, cluster.dataDirOf(node.id)]));
    const mounted = enabled.has('disk-full') ? NodeDisks.mount(dirs, NODE_DISK_BYTES) : null;
    if (mounted?.disks) cluster.env = { ...cluster.env, DLM_LOG_LEVEL: 'debug' };
    const skipped =
      mounted?.skipped == null ? [] : [{ nemesis: 'disk-full' as const, reason: mounted.skipped }];
    return { faults: new FaultNemeses(cluster, mounted?.disks ?? null, enabled, events), skipped };
  }

  /** Starts the client worker that the client-pause nemesis stops. */
  async startClientWorker(options: {
    readonly config: WorkerConfig;
    readonly history: History;
    readonly events: NemesisEvent[];
    readonly stop: NemesisStop;
  }): Promise<void> {
    const logPath = join(this.cluster.dir, `${options.config.name}.log`);
    this.worker = await ClientWorker.start({ ...options, logPath });
  }

  /** The loops that run beside the nemesis loop until the run heals. */
  loops(prng: { membership: Prng; clientPause: Prng }, stop: NemesisStop, ttlMs: number) {
    return [
      this.membership?.run(prng.membership, stop),
      this.worker?.pauseLoop(prng.clientPause, ttlMs),
    ].filter((loop) => loop !== undefined);
  }

  /** One disk-full or corrupt-record fault on `node`, healed before it returns. */
  async nodeFault(kind: NodeFault, node: string, prng: Prng): Promise<void> {
    if (kind === 'disk-full') await this.diskFull?.once(node);
    else await this.corrupt?.once(node, prng);
  }

  /** Lets the client worker finish its session and exit (or kills it); idempotent. */
  async closeClientWorker(): Promise<void> {
    await this.worker?.close();
  }

  /** Once every node is stopped: the disks give back what the nodes stored. */
  releaseDisks(): void {
    this.disks?.release();
  }

  private all() {
    return [this.diskFull, this.corrupt, this.membership, this.worker].filter((f) => f !== null);
  }

  verdicts(): CheckerVerdict[] {
    return this.all().map((fault) => fault.verdict());
  }

  violations(): Violation[] {
    return this.all().flatMap((fault) => fault.violations());
  }
}
