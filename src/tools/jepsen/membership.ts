import { setTimeout as sleep } from 'node:timers/promises';
import type * as grpc from '@grpc/grpc-js';
import type { Prng } from '../../util/prng.ts';
import type { ProcessCluster } from '../process-cluster.ts';
import type { Violation } from './checker.ts';
import { faultVerdict } from './fault-verdict.ts';
import { type NemesisEvent, now } from './history.ts';
import type { LogArchive } from './log-archive.ts';
import type { Members } from './members.ts';
import { emptyDirectory } from './node-disks.ts';
import type { CheckerVerdict } from './summary.ts';
import { type NemesisStop, sleepUnless, statusOf, waitUntilExited } from './waits.ts';

/**
 * The membership nemesis (issue 13, point 4): while the workload and the other nemeses
 * run, the cluster grows by its spare nodes (3 → 5) and shrinks back (5 → 3), over and
 * over, each change through the Cluster API as `dlm member add|remove` makes it. Every
 * shrink removes the current leader first (it hands leadership over, answers
 * UNAVAILABLE naming the new leader, and the call is retried there), then another
 * voter. A removed node is stopped; when it is added again it starts empty (`--join`),
 * as the operations guide says a node must.
 *
 * After each change the API called done, the voters that Status reports are compared
 * with the ones the changes so far must leave: a change acknowledged but not in force is
 * a violation. A change that did not finish in time (a partition, a killed leader) is
 * not: it is retried at the next step, and counted.
 */

/** Between two changes (ms). */
const STEP_GAP_MS: readonly [number, number] = [500, 1_500];
/** An add includes the new node's catch-up; both are retried at the leader until then. */
const ADD_TIMEOUT_MS = 20_000;
const REMOVE_TIMEOUT_MS = 15_000;
const CALL_DEADLINE_MS = 10_000;
const RETRY_MS = 100;

/** gRPC codes a membership call is retried on (see proto/dlm.proto, AddMember). */
const RETRIED_CODES: ReadonlySet<number> = new Set([
  4, // DEADLINE_EXCEEDED: a learner still catching up, or the call ran out of time
  14, // UNAVAILABLE: not the leader (a hint names it), or the leader handed over
]);
const INTERNAL = 13;
const CANCELLED = 1;
/**
 * How long a call answered CANCELLED waits to see whether the node it called exits: as
 * long as the disk-full nemesis gives a node to exit after its failed write. 2 s was too
 * short (seed 1205: the leader n6 logged its exit on a full disk, the pending AddMember
 * was cancelled, and the process was still there 2 s later).
 */
const EXIT_AFTER_CANCEL_MS = 10_000;

/**
 * Whether to ask the leader again: a refusal that passes, or the leader stopping on a
 * failure mid-call (another nemesis filled its disk, say: INTERNAL "n1 stopped: …"),
 * which leaves the change to be made, idempotently, at the next leader.
 */
function retried(error: grpc.ServiceError): boolean {
  if (RETRIED_CODES.has(error.code)) return true;
  return error.code === INTERNAL && / stopped: /.test(error.message);
}

export class MembershipNemesis {
  /** Voter counts Status reported after each change, in order: 3, 4, 5, 4, 3, … */
  private readonly sizes: number[] = [];
  private leaderRemovals = 0;
  private timedOut = 0;
  private readonly found: Violation[] = [];
  /** Spares started empty and not yet added: a timed-out add resumes without a wipe. */
  private readonly joining = new Set<string>();
  private growing = true;
  /** Removals in this shrink so far: the first takes the leader. */
  private removalsInShrink = 0;

  constructor(
    private readonly cluster: ProcessCluster,
    private readonly members: Members,
    private readonly events: NemesisEvent[],
    /** The size it shrinks back to (the founders'); it grows by every spare. */
    private readonly baseSize: number,
    /** Keeps a copy of a log before it is wiped, for the replay from the bootstrap. */
    private readonly archive: LogArchive,
  ) {}

  /** One change every 0.5–1.5 s until the run heals; each ends (bounded) before the next. */
  async run(prng: Prng, stop: NemesisStop): Promise<void> {
    for (;;) {
      await sleepUnless(prng.intBetween(...STEP_GAP_MS), stop);
      if (stop.nemesis) return;
      const size = this.members.ids().length;
      if (this.growing && size >= this.cluster.nodes.length) this.growing = false;
      if (!this.growing && size <= this.baseSize) {
        this.growing = true;
        this.removalsInShrink = 0;
      }
      await this.step(prng);
    }
  }

  /**
   * One change. A refusal it does not retry (anything but "not the leader", "catching
   * up" or a timeout) is a violation, not the end of the run: the API refused a change
   * the cluster's state allowed.
   */
  private async step(prng: Prng): Promise<void> {
    try {
      if (this.growing) await this.grow();
      else await this.shrink(prng);
    } catch (error) {
      const message = `a ${this.growing ? 'grow' : 'shrink'} step failed: ${String(error)}`;
      this.found.push({ check: 'membership', message, ops: [] });
    }
  }

  private async grow(): Promise<void> {
    const current = new Set(this.members.ids());
    const spare = this.cluster.nodes.find((node) => !current.has(node.id));
    if (spare === undefined) return;
    const { id } = spare;
    if (!this.joining.has(id)) {
      // Removed earlier (or never started): a member is added empty, never on old state.
      await this.cluster.kill(id);
      await this.archive.beforeWipe(id, this.cluster.dataDirOf(id));
      emptyDirectory(this.cluster.dataDirOf(id));
      this.cluster.start(id, { join: true });
      this.joining.add(id);
    }
    this.events.push({ atMs: now(), kind: 'member-add', target: id });
    const request = {
      node_id: id,
      peer_address: spare.peerAddress,
      client_address: spare.clientAddress,
    };
    const done = await this.callLeader('AddMember', request, ADD_TIMEOUT_MS);
    if (done) {
      this.joining.delete(id);
      this.members.added(id);
    }
    await this.changed(id, 'member-added', done);
  }

  private async shrink(prng: Prng): Promise<void> {
    const leader = await this.cluster.leader();
    const takeLeader = this.removalsInShrink === 0;
    const others = this.members.free().filter((id) => id !== leader);
    const id = takeLeader ? leader : others.length > 0 ? prng.pick(others) : null;
    // No leader known, or the one chosen is under another fault: try at the next step.
    if (id === null || !this.members.hold(id)) return;
    try {
      this.events.push({
        atMs: now(),
        kind: 'member-remove',
        target: id,
        ...(takeLeader ? { detail: 'the leader' } : {}),
      });
      const done = await this.removeMember(id);
      if (done) {
        this.members.removed(id);
        this.removalsInShrink++;
        if (takeLeader) this.leaderRemovals++;
        // No longer a member: it takes no part, and is started empty if added again.
        await this.cluster.kill(id);
      }
      await this.changed(id, 'member-removed', done);
    } finally {
      this.members.letGo(id);
    }
  }

  /**
   * A retried removal may find its first attempt applied (the answer was lost): the
   * node refused as "not a member" is then removed, which Status confirms below.
   */
  private async removeMember(id: string): Promise<boolean> {
    try {
      return await this.callLeader('RemoveMember', { node_id: id }, REMOVE_TIMEOUT_MS);
    } catch (error) {
      if (!String((error as Error).message).includes('not a member')) throw error;
      return true;
    }
  }

  /** Records the change's end, and checks Status against the members it must leave. */
  private async changed(
    id: string,
    kind: 'member-added' | 'member-removed',
    done: boolean,
  ): Promise<void> {
    if (!done) {
      this.timedOut++;
      this.events.push({ atMs: now(), kind, target: id, detail: 'not done in time; retried' });
      return;
    }
    const voters = await this.votersByStatus();
    const expected = [...this.members.ids()].sort();
    const detail = `voters ${voters?.join(',') ?? 'unknown (no leader answered)'}`;
    this.events.push({ atMs: now(), kind, target: id, detail });
    if (voters === null) return;
    this.sizes.push(voters.length);
    if (voters.join(',') !== expected.join(',')) {
      this.found.push({
        check: 'membership',
        message: `after ${kind} ${id}, Status names voters ${voters.join(',')}, not ${expected.join(',')}`,
        ops: [],
      });
    }
  }

  /**
   * The voters the leader reports, sorted; null if no leader answered. Of the nodes that
   * say they lead, the one of the highest term: a leader just resumed from a pause still
   * says it leads, with the members of its old term, until a message of the new term
   * reaches it (a run caught that stale view right after an add its successor made).
   */
  private async votersByStatus(): Promise<string[] | null> {
    let status: Record<string, unknown> | null = null;
    for (const node of this.cluster.nodes) {
      if (!this.cluster.isRunning(node.id)) continue;
      const answer = await statusOf(this.cluster, node.id);
      if (answer === null || answer.leader_id !== node.id) continue;
      if (status === null || Number(answer.term) > Number(status.term)) status = answer;
    }
    if (status === null) return null;
    const members = status.members as { id: string; learner: boolean }[];
    return members
      .filter((member) => !member.learner)
      .map((member) => member.id)
      .sort();
  }

  /**
   * Calls the leader, finding it again and retrying while the answer says to (not the
   * leader, a transfer under way, a learner catching up, the leader stopped), until
   * `timeoutMs`. True once it succeeded; false when the time ran out. Other refusals
   * are thrown.
   */
  private async callLeader(method: string, request: object, timeoutMs: number): Promise<boolean> {
    const until = now() + timeoutMs;
    while (now() < until) {
      const leader = await this.cluster.leader();
      if (leader !== null) {
        const deadlineMs = Math.max(1, Math.min(CALL_DEADLINE_MS, until - now()));
        const pid = this.cluster.pid(leader);
        try {
          await this.cluster.call(leader, method, request, deadlineMs, 'Cluster');
          return true;
        } catch (error) {
          const failure = error as grpc.ServiceError;
          if (!retried(failure) && !(await this.stoppedMidCall(failure, leader, pid))) {
            throw error;
          }
        }
      }
      await sleep(RETRY_MS);
    }
    return false;
  }

  /**
   * A leader that stops on a failure mid-call (another nemesis filled its disk) answers
   * INTERNAL "stopped", unless its process exits before the answer leaves: the client
   * then sees its stream reset, CANCELLED (seed 1204, five times in 600 s). Retried as
   * the INTERNAL is, only once the process called (`pid`) has indeed exited; the
   * disk-full nemesis may have restarted the node by then (seed 1207: a new process
   * was running when the check first looked, and the exit went unseen).
   */
  private async stoppedMidCall(
    error: grpc.ServiceError,
    node: string,
    pid: number | undefined,
  ): Promise<boolean> {
    if (error.code !== CANCELLED) return false;
    return waitUntilExited(this.cluster, node, EXIT_AFTER_CANCEL_MS, pid);
  }

  violations(): readonly Violation[] {
    return this.found;
  }

  verdict(): CheckerVerdict {
    const cycles = completedCycles(this.sizes, this.baseSize, this.cluster.nodes.length);
    return faultVerdict({
      name: `membership: ${this.baseSize} → ${this.cluster.nodes.length} → ${this.baseSize} under load, the leader removed, Status agreeing after each change`,
      check: 'membership',
      violations: this.found,
      stats: {
        changes: this.sizes.length,
        fullCycles: cycles,
        leaderRemovals: this.leaderRemovals,
        timedOut: this.timedOut,
        sizes: this.sizes.join(' '),
      },
      unknownBecause:
        cycles === 0 ? `no full grow-and-shrink cycle (voters: ${this.sizes.join(' ')})` : null,
      note: `voters after each change: ${this.sizes.join(' → ')}`,
    });
  }
}

/** How many times the voter counts went from `low` up to `high` and back to `low`. */
export function completedCycles(sizes: readonly number[], low: number, high: number): number {
  let cycles = 0;
  let reachedHigh = false;
  for (const size of sizes) {
    if (size === high) reachedHigh = true;
    if (size === low && reachedHigh) {
      cycles++;
      reachedHigh = false;
    }
  }
  return cycles;
}
