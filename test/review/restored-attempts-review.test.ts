/**
 * Review of cf7dd0a (withdrawing, on a snapshot restore, a write the snapshot shows
 * applied). A small harness plays one leader log, a replica that applies every entry,
 * and a lagging node (ProposalRegistry + its own state machine) that catches up by a
 * snapshot. The lagging node's write carries the late-apply listener acquire.ts uses:
 * an Acquired or Queued late apply appends a Withdraw of that attempt to the log.
 *
 * The property checked: a caller that was told its Acquire failed does not leave the
 * grant with its (live) session once every Withdraw the node proposed has applied.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  type LockCommand,
  type LockLimits,
  type LockResult,
  LockStateMachine,
  plainLockSnapshot,
} from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import type { AppliedProposal } from '../../src/node/proposals.ts';
import { ProposalRegistry } from '../../src/node/proposals.ts';
import { type LogIndex, logIndex, nodeId, type SessionId } from '../../src/util/ids.ts';

interface LogEntry {
  readonly index: number;
  readonly proposalId: string | null;
  readonly command: LockCommand;
}

class Harness {
  readonly log: LogEntry[] = [];
  /** A replica that applied everything so far (the snapshot source). */
  readonly full: LockStateMachine;
  /** The lagging node. */
  readonly lagging: LockStateMachine;
  readonly registry = new ProposalRegistry(nodeId('n3'), 'boot', 100, 60_000);
  laggingApplied = 0;
  fullApplied = 0;
  /** What each entry got on the full replica. */
  readonly results = new Map<number, LockResult>();
  private other = 0;

  constructor(limits: Partial<LockLimits> = {}) {
    this.full = new LockStateMachine(limits);
    this.lagging = new LockStateMachine(limits);
    this.append(null, { type: 'SetBehaviour', version: BEHAVIOUR_ATTEMPT_PROPOSALS });
  }

  append(proposalId: string | null, command: LockCommand): number {
    const index = this.log.length + 1;
    this.log.push({ index, proposalId, command });
    return index;
  }

  /** A write proposed by another node (its own proposal id). */
  appendOther(command: LockCommand): number {
    this.other += 1;
    return this.append(`n1/boot/${this.other}`, command);
  }

  /** The full replica applies up to `upTo` (default: the whole log). */
  applyFull(upTo = this.log.length): void {
    for (const entry of this.log.slice(this.fullApplied, upTo)) {
      const output = this.full.apply(logIndex(entry.index), entry.command, entry.proposalId);
      this.results.set(entry.index, output.result);
      this.full.checkInvariants();
    }
    this.fullApplied = upTo;
  }

  /** The lagging node installs the full replica's snapshot at its current index. */
  installSnapshot(): void {
    this.lagging.restore(plainLockSnapshot(this.full.snapshot()));
    const index = logIndex(this.fullApplied);
    this.lagging.skipTo(index);
    this.laggingApplied = this.fullApplied;
    this.registry.restored(index, (command, proposalId) =>
      this.lagging.attemptsOf(command, proposalId),
    );
  }

  /** The lagging node applies the rest of the log, as node.ts applyEntry does. */
  applyLagging(): void {
    while (this.laggingApplied < this.log.length) {
      const entry = this.log[this.laggingApplied];
      if (entry === undefined) break;
      const output = this.lagging.apply(logIndex(entry.index), entry.command, entry.proposalId);
      this.lagging.checkInvariants();
      this.laggingApplied = entry.index;
      this.registry.applied(logIndex(entry.index), entry.proposalId, output.result);
    }
  }

  /** Runs until every Withdraw the listener proposed has applied everywhere. */
  settle(): void {
    for (let i = 0; i < 5; i++) {
      this.applyLagging();
      this.applyFull();
    }
  }

  open(): SessionId {
    const index = this.appendOther({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: `open-${this.log.length}`,
    });
    return index as SessionId;
  }

  /**
   * Registers the lagging node's Acquire write with acquire.ts's late-apply listener;
   * the caller's outcome is recorded in `told`.
   */
  write(command: Extract<LockCommand, { type: 'Acquire' }>): {
    proposalId: string;
    told: { outcome: string };
  } {
    const told = { outcome: 'pending' };
    const listener = (late: AppliedProposal): void => {
      if (late.result.type === 'Acquired' || late.result.type === 'Queued') {
        this.append(`n3/boot/withdraw-${late.index}`, {
          type: 'Withdraw',
          lock: command.lock,
          sessionId: command.sessionId,
          requestId: command.requestId,
          attemptIndex: logIndex(late.index) as LogIndex,
        });
      }
    };
    const { proposalId, applied } = this.registry.add(0, 60_000, { listener, command });
    applied.then(
      (result) => {
        told.outcome = `applied:${result.result.type}`;
      },
      (error: unknown) => {
        told.outcome = error instanceof DlmError ? error.code : 'other';
      },
    );
    return { proposalId, told };
  }

  holdersOf(lock: string, sm: LockStateMachine = this.full): number[] {
    return sm.describe(lock).holders.map((holder) => holder.sessionId);
  }
}

function acquireOf(session: SessionId, requestId: string, waitMs = 0) {
  return {
    type: 'Acquire' as const,
    lock: 'x',
    sessionId: session,
    mode: 'exclusive' as const,
    waitMs,
    requestId,
    owner: 'o',
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('review cf7dd0a: harness controls (these pass)', () => {
  it('one copy in the snapshot: a caller still waiting is told its grant, which it keeps', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    h.registry.placed(proposalId, logIndex(h.append(proposalId, command)));
    h.applyFull();
    h.installSnapshot();
    h.settle();
    await flush();
    expect(told.outcome).toBe('applied:Acquired');
    expect(h.holdersOf('x')).toEqual([session]);
    expect(h.holdersOf('x', h.lagging)).toEqual([session]);
  });

  it('one copy applied normally by an orphan: the grant is withdrawn', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    h.registry.expire(60_000);
    await flush();
    expect(told.outcome).toBe('DEADLINE_EXCEEDED');
    h.append(proposalId, command);
    h.settle();
    expect(h.holdersOf('x')).toEqual([]);
  });
});

describe('review cf7dd0a: a caller still waiting keeps what it got', () => {
  it('a pending write in the snapshot is answered from it; a retry (same request id) is answered Acquired too', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    h.registry.placed(proposalId, logIndex(h.append(proposalId, command)));
    h.applyFull();
    h.installSnapshot(); // the lagging node's caller is still waiting for its answer
    await flush();
    // cf7dd0a failed it UNAVAILABLE and withdrew the grant, so the client library's
    // retry (same request id, after its backoff) was refused grantEnded.
    expect(told.outcome).toBe('applied:Acquired');
    h.settle();
    const retry = h.appendOther(command);
    h.settle();
    // Before cf7dd0a the retry was answered Acquired (exactly once: the first outcome).
    expect(h.results.get(retry)).toMatchObject({ type: 'Acquired' });
    expect(h.holdersOf('x')).toEqual([session]);
  });
});

describe('review cf7dd0a: restored() and a forward delivered twice', () => {
  it('both copies in the snapshot: a caller told UNAVAILABLE leaves no grant behind', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    // The forward reached the leader twice: two entries carry the same proposal.
    const first = h.append(proposalId, command);
    const second = h.append(proposalId, command);
    h.registry.placed(proposalId, logIndex(first));
    h.registry.placed(proposalId, logIndex(second));
    h.applyFull();
    h.installSnapshot();
    h.settle();
    await flush();

    expect(told.outcome).not.toBe('pending');
    if (!told.outcome.startsWith('applied:')) {
      // Told the write failed: nothing may stay with the session.
      expect(h.holdersOf('x')).toEqual([]);
    }
  });

  it('only the first copy in the snapshot: the second, still to apply, is no longer answered, and the grant stays', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    const first = h.append(proposalId, command);
    h.applyFull(); // the snapshot is taken here, covering only the first copy
    const second = h.append(proposalId, command);
    h.registry.placed(proposalId, logIndex(first));
    h.registry.placed(proposalId, logIndex(second));
    h.installSnapshot();
    h.settle();
    await flush();

    // Before cf7dd0a the write stayed pending and its placed entry answered it (Acquired).
    expect(told.outcome).not.toBe('pending');
    if (!told.outcome.startsWith('applied:')) {
      expect(h.holdersOf('x')).toEqual([]);
    }
  });

  it('an orphan (deadline passed) with both copies in the snapshot leaves no grant behind', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    h.registry.expire(60_000); // DEADLINE_EXCEEDED: orphaned, watched for a late apply
    await flush();
    expect(told.outcome).toBe('DEADLINE_EXCEEDED');
    h.append(proposalId, command);
    h.append(proposalId, command);
    h.applyFull();
    h.installSnapshot();
    h.settle();
    expect(h.holdersOf('x')).toEqual([]);
  });

  // Known gap, kept from before cf7dd0a: an orphan is told of its first late apply and
  // then forgotten, so a second copy of its forward stays. No transport delivers a
  // forward twice today (one send per write, no resend); if one ever does, fix this.
  it.fails('(pre-existing, no snapshot) an orphan applied twice leaves no grant behind', async () => {
    const h = new Harness();
    const session = h.open();
    const command = acquireOf(session, 'r1');
    const { proposalId, told } = h.write(command);
    h.registry.expire(60_000);
    await flush();
    expect(told.outcome).toBe('DEADLINE_EXCEEDED');
    h.append(proposalId, command);
    h.append(proposalId, command);
    h.settle();
    expect(h.holdersOf('x')).toEqual([]);
  });
});

describe('review cf7dd0a: restored() and the dedupe window', () => {
  it('a wait whose memory left the window before the snapshot is not granted to a caller told failure', async () => {
    const h = new Harness({ dedupeWindowMax: 4 });
    const holder = h.open();
    const waiter = h.open();
    const held = h.appendOther(acquireOf(holder, 'h1'));
    const command = acquireOf(waiter, 'w1', 3_600_000);
    const { proposalId, told } = h.write(command);
    h.append(proposalId, command); // Queued behind the holder
    // Other requests push the wait's remembered result out of the window.
    for (let i = 0; i < 6; i++) h.open();
    // The caller's deadline passes before the lagging node catches up.
    h.registry.expire(60_000);
    await flush();
    expect(told.outcome).toBe('DEADLINE_EXCEEDED');
    h.applyFull();
    h.installSnapshot();
    h.settle();
    // The holder lets go; the wait nobody will be told of is next.
    h.appendOther({
      type: 'Release',
      lock: 'x',
      sessionId: holder,
      token: held as never,
      requestId: 'rel',
    });
    h.settle();
    expect(h.holdersOf('x')).not.toContain(waiter);
  });
});
