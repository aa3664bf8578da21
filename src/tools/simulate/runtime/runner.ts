import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { type ApiContext, CallGate, DEFAULT_API_OPTIONS } from '../../../api/context.ts';
import { type ApiLogger, ERROR_CODE_KEY, LEADER_HINT_KEY } from '../../../api/errors.ts';
import { EventHub } from '../../../api/event-hub.ts';
import { lockService } from '../../../api/lock-service.ts';
import type { LockServiceHandlers } from '../../../api/proto.ts';
import {
  BEHAVIOUR_LATEST,
  BehaviourUnsupportedError,
  DEFAULT_LOCK_LIMITS,
  LOCK_LIMIT_NAMES,
  type LockLimits,
} from '../../../lock/index.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../../node/node.ts';
import type { Scheduler } from '../../../node/scheduler.ts';
import type { Transport } from '../../../node/transport.ts';
import { majority, type Raft } from '../../../raft/index.ts';
import type { WritableStorage } from '../../../storage/writable-storage.ts';
import { AssertionError } from '../../../util/assert.ts';
import { type LogIndex, type NodeId, nodeId } from '../../../util/ids.ts';
import { Prng } from '../../../util/prng.ts';
import { chainHash, SafetyViolation } from '../checker.ts';
import { RuntimeChecker } from './checker.ts';
import {
  type CallOptions,
  type CallResult,
  type ClientStats,
  type ClientTransport,
  type GivenUp,
  type LockMethod,
  SimClient,
} from './clients.ts';
import { SimDisk } from './disk.ts';
import { SimNetwork } from './network.ts';
import {
  deriveRuntimeOptions,
  type RuntimeFault,
  type RuntimeOverrides,
  type RuntimeSimOptions,
} from './options.ts';
import { ProcessClock, VirtualTime } from './scheduler.ts';

/**
 * The runtime simulation: real DlmNode processes and the real dlm.v1.Lock handlers,
 * on simulated disks and a simulated network, with simulated clients, all in virtual
 * time from one seed. Faults (crashes, crash loops, partitions, pauses, leadership
 * transfers, message loss and delay) run for a while; then everything heals, clients
 * finish what they were doing, and the cluster must go quiet with every answer checked.
 */

/** What a node process is built from; a bug injection may build something else from it. */
export interface NodeParts {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly storage: WritableStorage;
  readonly transport: Transport;
  readonly options: NodeRuntimeOptions;
  readonly clock: ProcessClock;
  readonly scheduler: Scheduler;
  readonly seed: number;
  /** Unique per incarnation, as a real process's random boot id is. */
  readonly bootId: string;
}

/** A test-only seam for injecting known bugs into the runtime; production has no flags. */
export interface RuntimeBugs {
  readonly createNode?: (parts: NodeParts) => DlmNode;
}

export interface RuntimeStats {
  crashes: number;
  crashLoops: number;
  restarts: number;
  partitions: number;
  pauses: number;
  transfers: number;
  nodeFailures: number;
  clientOps: ClientStats;
  givenUp: number;
  givenUpLostInCrash: number;
  messagesSent: number;
  messagesDropped: number;
  diskWrites: number;
  apiErrors: number;
}

export interface RuntimeResult {
  readonly seed: number;
  readonly options: RuntimeSimOptions;
  readonly events: number;
  readonly virtualTimeMs: number;
  /** A hash over every event's time and label: equal for two runs of one seed. */
  readonly traceHash: number;
  readonly violation: string | null;
  readonly trace: readonly string[];
  readonly notes: readonly string[];
  readonly answersChecked: number;
  readonly committedEntries: number;
  /** Committed entries whose proposal id an earlier committed entry already had. */
  readonly proposalIdsReused: number;
  readonly stats: RuntimeStats;
}

const TRACE_LENGTH = 40;
const LOCKS = ['a', 'b', 'c'];
const START_INDEX = 1;

class SimCall extends EventEmitter {
  cancelled = false;
  answered = false;
  readonly metadata = new grpc.Metadata();

  constructor(readonly request: unknown) {
    super();
  }
}

class NodeProcess {
  readonly calls = new Set<{ readonly fail: () => void }>();

  constructor(
    readonly id: NodeId,
    readonly incarnation: number,
    readonly clock: ProcessClock,
    readonly node: DlmNode,
    readonly handlers: LockServiceHandlers,
  ) {}
}

interface NodeSlot {
  readonly id: NodeId;
  readonly disk: SimDisk;
  readonly clockRate: number;
  process: NodeProcess | null;
  incarnations: number;
  /** Bumped whenever the slot's fate changes, so stale restarts do nothing. */
  epoch: number;
  crashLoopLeft: number;
}

export class RuntimeSimulation implements ClientTransport {
  readonly time = new VirtualTime();
  private readonly prng: Prng;
  private readonly network: SimNetwork;
  private readonly checker: RuntimeChecker;
  private readonly slots = new Map<NodeId, NodeSlot>();
  /** Each node's config file's lock section. */
  private readonly lockSections: ReadonlyMap<NodeId, Partial<LockLimits>>;
  private readonly clients: SimClient[] = [];
  private readonly givenUp: GivenUp[] = [];
  readonly nodeIds: readonly string[];
  private readonly trace: string[] = [];
  private traceHash = 0;
  private phase: 'faulty' | 'healing' | 'settling' | 'done' = 'faulty';
  private violation: string | null = null;
  private quietSinceMs: number | null = null;
  private callSequence = 0;
  readonly stats: RuntimeStats;

  constructor(
    readonly options: RuntimeSimOptions,
    private readonly bugs: RuntimeBugs = {},
    /** Tells the story of the run line by line (`--verbose` replays). */
    private readonly log: ((line: string) => void) | null = null,
  ) {
    this.prng = new Prng(options.seed);
    this.network = new SimNetwork(this.time, options.network, this.prng.fork());
    this.checker = new RuntimeChecker(START_INDEX, () => this.time.nowMs);
    if (log !== null) {
      this.checker.onApplied = (index, entry) => this.say(`committed ${index}: ${entry}`);
    }
    const ids = Array.from({ length: options.nodeCount }, (_, i) => nodeId(`n${i + 1}`));
    this.nodeIds = ids;
    this.lockSections = new Map(ids.map((id, i) => [id, options.lockSections[i] ?? {}]));
    const clientStats: ClientStats = {
      calls: 0,
      retries: 0,
      acquired: 0,
      notAcquired: 0,
      setsAcquired: 0,
      permitsAcquired: 0,
      elected: 0,
      proclaimed: 0,
      leaderReads: 0,
      abandonedWaits: 0,
      sessionsLost: 0,
      reads: 0,
      errors: {},
    };
    this.stats = {
      crashes: 0,
      crashLoops: 0,
      restarts: 0,
      partitions: 0,
      pauses: 0,
      transfers: 0,
      nodeFailures: 0,
      clientOps: clientStats,
      givenUp: 0,
      givenUpLostInCrash: 0,
      messagesSent: 0,
      messagesDropped: 0,
      diskWrites: 0,
      apiErrors: 0,
    };
    for (const id of ids) {
      const drift = options.clockDriftMax * (this.prng.nextFloat() * 2 - 1);
      const disk = new SimDisk(
        { voters: ids, learners: [] },
        options.disk,
        this.prng.fork(),
        (entries) => this.checker.committed(id, entries),
      );
      const slot: NodeSlot = {
        id,
        disk,
        clockRate: 1 + drift,
        process: null,
        incarnations: 0,
        epoch: 0,
        crashLoopLeft: 0,
      };
      this.slots.set(id, slot);
      this.startProcess(slot);
    }
    for (let i = 0; i < options.clientCount; i++) {
      const client = new SimClient(
        `c${i}`,
        this.time,
        this.prng.fork(),
        this,
        this.checker,
        {
          locks: LOCKS,
          attemptsMax: options.clientAttemptsMax,
          clockDriftMax: options.clockDriftMax,
          lockSetShare: options.lockSetShare,
          semaphoreShare: options.semaphoreShare,
          electionShare: options.electionShare,
          giveUpShare: options.giveUpShare,
          sessionsKept: options.sessionsKept,
          leaderReadsOnly: options.leaderReadsOnly,
          giveUpAfterMsMax: options.giveUpAfterMsMax,
          reacquiresGivenUp: options.reacquiresGivenUp,
        },
        clientStats,
        this.givenUp,
      );
      this.clients.push(client);
    }
  }

  async run(): Promise<RuntimeResult> {
    for (const client of this.clients) {
      this.time.after(this.prng.intBetween(0, 200), 'client start', () => client.start());
    }
    this.time.after(this.jitter(this.options.faultIntervalMs), 'fault', () => this.onFault());
    this.time.at(this.options.faultPhaseMs, 'heal', () => this.heal());
    try {
      await this.time.run(
        () => this.phase === 'done' || this.violation !== null || this.checker.violation !== null,
        (label) => this.afterEvent(label),
      );
      if (this.phase !== 'done' && this.violation === null) {
        throw new SafetyViolation('Liveness: the event queue ran dry');
      }
    } catch (error) {
      this.violation ??= describeViolation(error);
    }
    // A check inside a client records its finding before it throws.
    if (this.checker.violation !== null) this.violation = `Violation: ${this.checker.violation}`;
    this.stats.messagesSent = this.network.sent;
    this.stats.messagesDropped = this.network.dropped;
    this.stats.diskWrites = [...this.slots.values()].reduce(
      (sum, slot) => sum + slot.disk.writes,
      0,
    );
    return {
      seed: this.options.seed,
      options: this.options,
      events: this.time.events,
      virtualTimeMs: Math.round(this.time.nowMs),
      traceHash: this.traceHash,
      violation: this.violation,
      trace: [...this.trace],
      notes: [...this.checker.notes],
      answersChecked: this.checker.stats.answersChecked,
      committedEntries: this.checker.stats.committedEntries,
      proposalIdsReused: this.checker.stats.proposalIdsReused,
      stats: this.stats,
    };
  }

  private afterEvent(label: string): void {
    const line = `${this.time.nowMs.toFixed(1)} ${label}`;
    this.traceHash = chainHash(this.traceHash, line);
    if (this.trace.length >= TRACE_LENGTH) this.trace.shift();
    this.trace.push(line);
  }

  // ------------------------------------------------------------ processes

  private startProcess(slot: NodeSlot): void {
    slot.incarnations++;
    const incarnation = slot.incarnations;
    const clock = new ProcessClock(
      this.time,
      `${slot.id}#${incarnation}`,
      slot.clockRate,
      this.prng.intBetween(0, 1_000_000),
    );
    const storage = slot.disk.open(clock);
    const transport = this.network.connect(slot.id, clock);
    const parts: NodeParts = {
      id: slot.id,
      incarnation,
      storage,
      transport,
      options: {
        ...this.options.runtime,
        lock: this.lockSections.get(slot.id) ?? {},
        // A restart is the node's upgrade to the newest binary.
        behaviourMax: incarnation === 1 ? this.firstBehaviourMax(slot.id) : BEHAVIOUR_LATEST,
      },
      clock,
      scheduler: clock,
      seed: this.prng.nextUint32(),
      bootId: `boot-${incarnation}`,
    };
    const node = this.bugs.createNode?.(parts) ?? defaultNode(parts);
    const logger: ApiLogger = (level, message, fields) => {
      if (level !== 'error') return;
      this.stats.apiErrors++;
      this.note(`${slot.id}#${incarnation} API ${message} ${JSON.stringify(fields ?? {})}`);
    };
    const context: ApiContext = {
      node,
      events: new EventHub(node, logger),
      logger,
      gate: new CallGate(DEFAULT_API_OPTIONS.clientCallsInFlightMax),
      options: DEFAULT_API_OPTIONS,
      scheduler: clock,
    };
    const process = new NodeProcess(slot.id, incarnation, clock, node, lockService(context));
    // Every entry this node applies must have the reference's outcome at that index.
    node.subscribe((index, output) =>
      this.checker.nodeApplied(slot.id, index, output, node.locks.rules),
    );
    node.observe({
      failed: (error) => {
        // As serve.ts does: the process exits, and its supervisor starts it again.
        this.stats.nodeFailures++;
        this.note(`${slot.id}#${incarnation} failed: ${error.message}`);
        if (error instanceof BehaviourUnsupportedError) {
          this.checker.violated(
            `Behaviour: the cluster raised the lock behaviour version while ${slot.id}#${incarnation} could not apply it: ${error.message}`,
          );
        }
        this.time.after(0, `${slot.id} exits`, () => {
          if (slot.process === process) this.crash(slot, 100);
        });
      },
    });
    node.subscribe((index) => this.checkDurable(slot.id, node, index));
    slot.process = process;
    this.say(`start ${slot.id}#${incarnation}`);
    clock.run('start', () => node.start());
  }

  /**
   * Durability, as the core simulator checks it, with the disks as witnesses: a node
   * applies an entry only once a majority of voters hold it on their disks (or in a
   * snapshot). Recorded rather than thrown: the listener runs inside the node's apply.
   */
  private checkDurable(applier: NodeId, node: DlmNode, index: LogIndex): void {
    const raft = Reflect.get(node, 'raft') as Raft;
    const entryTerm = raft.log.term(index);
    const { voters } = raft.config;
    const holders = voters.filter((voter) => {
      const durable = this.slots.get(voter)?.disk.durable;
      if (durable === undefined) return false;
      return durable.term(index) === entryTerm || durable.snapshot().metadata.index >= index;
    });
    if (holders.length >= majority(voters.length)) return;
    this.violation ??= `Violation: Durability: ${applier} applied ${index}:${entryTerm} while ${holders.length} of ${voters.length} voters had it on disk (${holders.join(', ') || 'none'})`;
  }

  private crash(slot: NodeSlot, downtimeMs: number | null): void {
    const process = slot.process;
    if (process === null) return;
    this.stats.crashes++;
    this.say(`crash ${slot.id}#${process.incarnation}`);
    process.clock.kill();
    slot.disk.crash();
    slot.process = null;
    slot.epoch++;
    for (const call of process.calls) call.fail();
    process.calls.clear();
    if (downtimeMs !== null) this.scheduleRestart(slot, downtimeMs);
  }

  private scheduleRestart(slot: NodeSlot, downtimeMs: number): void {
    const epoch = slot.epoch;
    this.time.after(downtimeMs, `restart ${slot.id}`, () => {
      if (slot.epoch !== epoch || slot.process !== null) return;
      this.stats.restarts++;
      this.startProcess(slot);
      // A crash loop: killed again soon after it starts, while clients keep calling.
      if (slot.crashLoopLeft > 0) {
        slot.crashLoopLeft--;
        const upMs = this.prng.intBetween(10, 300);
        const restartEpoch = slot.epoch;
        this.time.after(upMs, `crash-loop ${slot.id}`, () => {
          if (slot.epoch === restartEpoch && this.phase === 'faulty')
            this.crash(slot, this.prng.intBetween(20, 300));
        });
      }
    });
  }

  // ------------------------------------------------------------ client calls

  call(method: LockMethod, request: object, options: CallOptions): Promise<CallResult> {
    const id = ++this.callSequence;
    if (this.log !== null)
      this.say(`call#${id} ${method} -> ${options.target} ${JSON.stringify(request)}`);
    return new Promise((resolve) => {
      let done = false;
      let onGiveUp = (): boolean => false;
      let servedBy: { node: string; incarnation: number } | null = null;
      const finish = (result: CallResult): void => {
        if (done) return;
        done = true;
        if (this.log !== null) {
          const summary = result.ok
            ? JSON.stringify(result.response)
            : `${grpc.status[result.code]} ${result.dlmCode ?? ''} sawGiveUp=${result.serverSawGiveUp}`;
          this.say(`call#${id} answered by ${result.node}: ${summary}`);
        }
        resolve(result);
      };
      const failure = (code: grpc.status, serverSawGiveUp = false): CallResult => ({
        ok: false,
        node: servedBy?.node ?? null,
        code,
        dlmCode: null,
        leaderHint: null,
        serverSawGiveUp,
        process: servedBy,
      });
      const giveUp = (code: grpc.status) => () => {
        if (done) return;
        finish(failure(code, onGiveUp()));
      };
      const deadline = this.time.after(
        options.deadlineMs,
        'deadline',
        giveUp(grpc.status.DEADLINE_EXCEEDED),
      );
      const cancel =
        options.cancelAfterMs === null
          ? null
          : this.time.after(options.cancelAfterMs, 'cancel', giveUp(grpc.status.CANCELLED));
      this.time.after(this.clientDelayMs(), `${method} arrives`, () => {
        if (done) return;
        const slot = this.slots.get(nodeId(options.target));
        const process = slot?.process ?? null;
        if (process === null || slot === undefined) {
          this.time.after(this.clientDelayMs(), 'refused', () =>
            finish(failure(grpc.status.UNAVAILABLE)),
          );
          return;
        }
        servedBy = { node: slot.id, incarnation: process.incarnation };
        const call = new SimCall(request);
        const tracked = {
          fail: () =>
            this.time.after(this.clientDelayMs(), 'connection lost', () =>
              finish(failure(grpc.status.UNAVAILABLE)),
            ),
        };
        process.calls.add(tracked);
        onGiveUp = () => {
          if (call.answered) return false;
          // The server side of a call that ran out or was cancelled sees it at once.
          call.cancelled = true;
          process.clock.run('call cancelled', () => call.emit('cancelled'));
          return true;
        };
        const callback = (error: grpc.ServiceError | null, response?: unknown): void => {
          if (call.answered || call.cancelled) return;
          call.answered = true;
          process.calls.delete(tracked);
          deadline.cancelled = true;
          if (cancel !== null) cancel.cancelled = true;
          const result =
            error === null ? okResult(slot.id, response) : errorResult(slot.id, error, servedBy);
          this.time.after(this.clientDelayMs(), `${method} answer`, () => finish(result));
        };
        const handler = process.handlers[method] as unknown as (
          call: SimCall,
          callback: (error: grpc.ServiceError | null, response?: unknown) => void,
        ) => void;
        process.clock.run(`${method} ${slot.id}`, () => handler(call, callback));
      });
    });
  }

  private clientDelayMs(): number {
    return this.prng.intBetween(1, this.options.clientDelayMsMax);
  }

  // ------------------------------------------------------------ faults

  private onFault(): void {
    if (this.phase !== 'faulty') return;
    this.time.after(this.jitter(this.options.faultIntervalMs), 'fault', () => this.onFault());
    const kinds = Object.entries(this.options.faultWeights) as [RuntimeFault, number][];
    const total = kinds.reduce((sum, [, weight]) => sum + weight, 0);
    if (total === 0) return;
    let roll = this.prng.intBetween(1, total);
    for (const [kind, weight] of kinds) {
      roll -= weight;
      if (roll <= 0) {
        this.say(`fault ${kind}`);
        this.inject(kind);
        return;
      }
    }
  }

  private inject(kind: RuntimeFault): void {
    const up = [...this.slots.values()].filter((slot) => slot.process !== null);
    switch (kind) {
      case 'crash': {
        if (up.length === 0) return;
        this.crash(this.prng.pick(up), this.prng.intBetween(50, 1_500));
        return;
      }
      case 'crashLeader': {
        const leader = this.leaderSlot();
        if (leader !== null) this.crash(leader, this.prng.intBetween(50, 1_500));
        return;
      }
      case 'crashLoop': {
        if (up.length === 0) return;
        const slot = this.prng.pick(up);
        this.stats.crashLoops++;
        slot.crashLoopLeft = this.prng.intBetween(2, 4);
        this.crash(slot, this.prng.intBetween(20, 300));
        return;
      }
      case 'partition': {
        const shuffled = this.prng.shuffle(this.nodeIds.map(nodeId));
        const cut = this.prng.intBetween(1, Math.floor(shuffled.length / 2));
        this.network.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
        this.stats.partitions++;
        return;
      }
      case 'isolateLeader': {
        const leader = this.leaderSlot();
        if (leader === null) return;
        this.network.partition([
          [leader.id],
          this.nodeIds.map(nodeId).filter((id) => id !== leader.id),
        ]);
        this.stats.partitions++;
        return;
      }
      case 'oneWay': {
        const [from, to] = this.prng.shuffle(this.nodeIds.map(nodeId));
        if (from === undefined || to === undefined) return;
        this.network.cut(from, to);
        this.stats.partitions++;
        return;
      }
      case 'heal':
        this.network.heal();
        return;
      case 'pause': {
        if (up.length === 0) return;
        const slot = this.prng.pick(up);
        slot.process?.clock.pause(this.time.nowMs + this.prng.intBetween(50, 1_000));
        this.stats.pauses++;
        return;
      }
      case 'transferLeadership': {
        const leader = this.leaderSlot();
        const process = leader?.process;
        if (process == null) return;
        this.stats.transfers++;
        process.clock.run('transfer', () => {
          process.node.transferLeadership(null, { timeoutMs: 1_000 }).catch(() => {});
        });
        return;
      }
    }
  }

  private leaderSlot(): NodeSlot | null {
    let best: NodeSlot | null = null;
    let bestTerm = -1;
    for (const slot of this.slots.values()) {
      const status = slot.process?.node.status();
      if (status?.role === 'leader' && status.term > bestTerm) {
        best = slot;
        bestTerm = status.term;
      }
    }
    return best;
  }

  // ------------------------------------------------------------ healing and quiescence

  private heal(): void {
    this.phase = 'healing';
    this.network.heal();
    this.network.dropProbability = 0;
    for (const slot of this.slots.values()) {
      slot.crashLoopLeft = 0;
      if (slot.process === null) {
        slot.epoch++;
        this.stats.restarts++;
        this.startProcess(slot);
      }
    }
    for (const client of this.clients) client.stop();
    this.time.after(100, 'quiet?', () => this.checkQuiet());
  }

  /**
   * After healing: clients finish what they were doing (keeping their sessions alive),
   * then the cluster gets `settleMs` to withdraw abandoned waits in the background.
   * Then the checks of abandoned Acquires run on the reference, once it has caught up
   * with the leader's commit; then clients go silent, and once every node has applied
   * the same index as the reference, their lock states are compared with it.
   */
  private checkQuiet(): void {
    if (this.time.nowMs > this.options.faultPhaseMs + this.options.quiescenceWindowMs) {
      throw new SafetyViolation(
        `Liveness: not quiet ${this.options.quiescenceWindowMs} ms after healing (${this.phase}): ${this.describeNodes()}, ` +
          `${this.clients.filter((client) => !client.idle).length} clients busy, reference at ${this.checker.appliedIndex}`,
      );
    }
    if (this.phase === 'healing') this.settle();
    else if (this.phase === 'settling') this.finish();
    if (this.phase !== 'done') this.time.after(100, 'quiet?', () => this.checkQuiet());
  }

  private settle(): void {
    if (this.clients.some((client) => !client.idle)) {
      this.quietSinceMs = null;
      return;
    }
    this.quietSinceMs ??= this.time.nowMs;
    if (this.time.nowMs - this.quietSinceMs < this.options.settleMs) return;
    const commit = this.leaderSlot()?.process?.node.status().commitIndex;
    if (commit === undefined || this.checker.appliedIndex < commit) return;
    this.checkGivenUp();
    for (const client of this.clients) client.halt();
    this.phase = 'settling';
  }

  private finish(): void {
    const commit = this.leaderSlot()?.process?.node.status().commitIndex;
    if (commit === undefined || this.checker.appliedIndex !== commit) return;
    for (const slot of this.slots.values()) {
      if (slot.process?.node.status().appliedIndex !== commit) return;
    }
    this.finalChecks();
    this.phase = 'done';
  }

  private finalChecks(): void {
    this.checkRulesAgreed();
    this.checkBehaviourRaised();
    const reference = this.checker.referenceSnapshot();
    for (const slot of this.slots.values()) {
      const node = slot.process?.node;
      if (node === undefined) continue;
      const actual = JSON.stringify(node.locks.snapshot());
      if (actual !== reference) {
        throw new SafetyViolation(
          `State: ${slot.id}'s lock state at ${this.checker.appliedIndex} differs from the reference replay of the committed log`,
        );
      }
    }
    const unverified = this.checker.unverifiedAnswers;
    if (unverified.length > 0) {
      const first = unverified[0];
      throw new SafetyViolation(
        `Answer: ${unverified.length} answers name indexes that never committed, e.g. ${JSON.stringify(first)}`,
      );
    }
  }

  private firstBehaviourMax(id: NodeId): number {
    return this.options.behaviourMaxes[this.nodeIds.indexOf(id)] ?? BEHAVIOUR_LATEST;
  }

  /** Every node runs the newest binary now, so the leader must have raised the version. */
  private checkBehaviourRaised(): void {
    const processes = [...this.slots.values()].map((slot) => slot.process);
    const upgraded = processes.every(
      (process) => process !== null && process.node.locks.behaviourMax === BEHAVIOUR_LATEST,
    );
    const version = this.checker.referenceBehaviour();
    if (upgraded && version !== BEHAVIOUR_LATEST) {
      throw new SafetyViolation(
        `Liveness: every node runs a binary that applies behaviour version ${BEHAVIOUR_LATEST}, but the log holds version ${version}`,
      );
    }
  }

  /** Some leader proposed its config's lock rules, and they are what the log has in force. */
  private checkRulesAgreed(): void {
    const { rules, rulesSetIndex } = this.checker.referenceRules();
    if (rulesSetIndex === null) {
      throw new SafetyViolation('Liveness: no leader put lock rules in force through the log');
    }
    const fromFile = [...this.lockSections.values()].some((section) =>
      LOCK_LIMIT_NAMES.every(
        (field) => (section[field] ?? DEFAULT_LOCK_LIMITS[field]) === rules[field],
      ),
    );
    if (!fromFile) {
      throw new SafetyViolation(
        `Rules: the rules in force (set at ${rulesSetIndex}) are no node's config: ${JSON.stringify(rules)}`,
      );
    }
  }

  /**
   * A client told that its Acquire failed, and done retrying it, must not end up
   * holding the lock through that request once the server had time to withdraw it,
   * unless a server that took an attempt of it died first (counted, not failed).
   */
  private checkGivenUp(): void {
    this.stats.givenUp = this.givenUp.length;
    for (const given of this.givenUp) {
      if (!this.checker.sessionAlive(given.sessionId)) continue;
      const through = this.checker.holdsThrough(given.sessionId, given.requestId, given.lock);
      if (through === null) continue;
      const { token } = through;
      const client = this.clients.find((each) => each.name === given.client);
      if (client?.holds(given.lock, token) || client?.wasTold(given.lock, token)) continue;
      // A later request of the session told of the same grant (a re-acquire) keeps it
      // unless it too was given up: the grant is left behind only by all of them.
      const told = through.told.map((requestId) =>
        this.givenUp.find(
          (each) => each.sessionId === given.sessionId && each.requestId === requestId,
        ),
      );
      if (told.some((each) => each === undefined)) continue;
      const died = told
        .flatMap((each) => each?.processes ?? [])
        .concat(given.processes)
        .find(
          (process) =>
            this.slots.get(nodeId(process.node))?.process?.incarnation !== process.incarnation,
        );
      if (died !== undefined) {
        // The product's client settles such a request (src/client/settle.ts); these
        // simulated clients do not, so the grant is left to its session.
        this.stats.givenUpLostInCrash++;
        this.note(
          `${given.client} gave up ${given.lock} request ${given.requestId}; ${died.node}#${died.incarnation} took an attempt and died before withdrawing it`,
        );
        continue;
      }
      throw new SafetyViolation(
        `Abandoned acquire: ${given.client} gave up ${given.lock} (session ${given.sessionId}, request ${given.requestId}) at ${given.atMs} ms, yet its session holds it through that request with token ${token}`,
      );
    }
  }

  // ------------------------------------------------------------ helpers

  private describeNodes(): string {
    return [...this.slots.values()]
      .map((slot) => {
        const status = slot.process?.node.status();
        if (status === undefined) return `${slot.id}:down`;
        return `${slot.id}:${status.role}/t${status.term}/commit=${status.commitIndex}/applied=${status.appliedIndex}`;
      })
      .join(' ');
  }

  private say(line: string): void {
    this.log?.(`${this.time.nowMs.toFixed(1).padStart(8)} ${line}`);
  }

  private note(text: string): void {
    if (this.checker.notes.length < 20) this.checker.notes.push(text);
  }

  private jitter(meanMs: number): number {
    return this.prng.intBetween(Math.max(1, Math.floor(meanMs / 2)), Math.ceil((meanMs * 3) / 2));
  }
}

function defaultNode(parts: NodeParts): DlmNode {
  return buildNode(DlmNode, parts);
}

/** Builds one process's node from its parts; bug injections pass a subclass or a boot id. */
export function buildNode(Node: typeof DlmNode, parts: NodeParts, bootId = parts.bootId): DlmNode {
  return new Node(
    parts.id,
    parts.storage,
    parts.transport,
    parts.options,
    parts.clock,
    parts.seed,
    parts.scheduler,
    bootId,
  );
}

function okResult(node: string, response: unknown): CallResult {
  return { ok: true, node, response };
}

function errorResult(
  node: string,
  error: grpc.ServiceError,
  servedBy: { node: string; incarnation: number } | null,
): CallResult {
  const text = (key: string): string | null => {
    const value = error.metadata?.get(key)[0];
    return typeof value === 'string' ? value : null;
  };
  return {
    ok: false,
    node,
    code: error.code,
    dlmCode: text(ERROR_CODE_KEY),
    leaderHint: text(LEADER_HINT_KEY),
    serverSawGiveUp: false,
    process: servedBy,
  };
}

function describeViolation(error: unknown): string {
  if (error instanceof SafetyViolation) return `Violation: ${error.message}`;
  if (error instanceof AssertionError) return `Assertion: ${error.message}`;
  return `Crash of the harness or the code under test: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}

export async function runRuntimeSimulation(
  seed: number,
  overrides: RuntimeOverrides = {},
  bugs: RuntimeBugs = {},
  log: ((line: string) => void) | null = null,
): Promise<RuntimeResult> {
  return new RuntimeSimulation(deriveRuntimeOptions(seed, overrides), bugs, log).run();
}
