import type { CallEnd, CallObserver } from '../../client/index.ts';
import { errorText, type History, type Op, type Outcome, type SessionOpKind } from './history.ts';

/**
 * Records one client's calls into the history, from the client library's call observer
 * (it sees each call once, retries included, with its request and answer):
 *
 * - OpenSession, KeepAlive and CloseSession become ops of their own. The keepalives are
 *   the session's, on its own timer: no other way shows when each refresh began.
 * - The Acquire, AcquireAll and Release calls the client loops make for the ops it records itself
 *   (wrapped in `during`) give those ops their request id and answer index.
 *
 * A settle's background Acquire and Release (client/settle.ts) are not recorded: they
 * only ever give back a grant whose acquire is already `info`, which the checkers allow
 * to have never taken effect, so leaving them out can hide a bug but never invent one.
 */
export class CallRecorder {
  /** The ops whose call is expected now, by what the call will carry (see callKey). */
  private readonly expected = new Map<string, Op>();

  constructor(
    private readonly history: History,
    private readonly client: string,
  ) {}

  /** Runs `call`, which makes the Acquire or Release call that `op` stands for. */
  async during<T>(op: Op, call: () => Promise<T>): Promise<T> {
    const key = opKey(op);
    this.expected.set(key, op);
    try {
      return await call();
    } finally {
      this.expected.delete(key);
    }
  }

  readonly observer: CallObserver = ({ method, request }) => {
    const wire = request as Record<string, unknown>;
    switch (method) {
      case 'OpenSession':
        return this.sessionCall('open-session', wire);
      case 'KeepAlive':
        return this.sessionCall('keep-alive', wire);
      case 'CloseSession':
        return this.sessionCall('close-session', wire);
      case 'Acquire':
      case 'AcquireAll':
      case 'AcquirePermits':
      case 'Campaign':
      case 'Proclaim':
      case 'Release':
        return this.lockCall(method, wire);
      default:
        return () => {};
    }
  };

  private sessionCall(kind: SessionOpKind, wire: Record<string, unknown>): (end: CallEnd) => void {
    const fields: Partial<Op> = {};
    if (wire.session_id !== undefined) fields.session = String(wire.session_id);
    if (wire.request_id !== undefined) fields.requestId = String(wire.request_id);
    const op = this.history.invoke(this.client, kind, '', fields);
    return (end) => {
      if ('response' in end && kind === 'open-session') {
        op.session = String(end.response.session_id);
        op.ttlMs = Number(end.response.ttl_ms);
      }
      this.complete(op, end);
    };
  }

  /** The first call that matches an expected op is its; a later one (a settle's) is not. */
  private lockCall(method: LockMethod, wire: Record<string, unknown>) {
    const key = callKey(method, wire);
    const op = this.expected.get(key);
    if (op === undefined) return () => {};
    this.expected.delete(key);
    op.requestId = String(wire.request_id);
    return (end: CallEnd) => {
      const index = 'response' in end ? answerIndexOf(end.response) : undefined;
      if (index !== undefined) op.answerIndex = index;
    };
  }

  private complete(op: Op, end: CallEnd): void {
    if ('response' in end) {
      const index = answerIndexOf(end.response);
      if (index !== undefined) op.answerIndex = index;
      this.history.complete(op, 'ok');
      return;
    }
    const outcome: Outcome = end.error.outcomeUnknown ? 'info' : 'fail';
    this.history.complete(op, outcome, { error: errorText(end.error) });
  }
}

/** The calls the client loops make for ops they record themselves. */
type LockMethod = 'Acquire' | 'AcquireAll' | 'AcquirePermits' | 'Campaign' | 'Proclaim' | 'Release';

/** The attempts, found by the owner tag each op sends (unique in the run). */
const ATTEMPT_METHOD: Partial<Record<Op['kind'], LockMethod>> = {
  acquire: 'Acquire',
  'acquire-all': 'AcquireAll',
  'acquire-permits': 'AcquirePermits',
  campaign: 'Campaign',
};

function opKey(op: Op): string {
  const attempt = ATTEMPT_METHOD[op.kind];
  if (attempt !== undefined) return `${attempt}/${op.owner}`;
  // A resignation is the Release of the term's grant.
  if (op.kind === 'release' || op.kind === 'resign')
    return `Release/${op.session}/${op.lock}/${op.token}`;
  if (op.kind === 'proclaim') return `Proclaim/${op.session}/${op.lock}/${op.token}/${op.value}`;
  throw new Error(`call-recorder: op #${op.id} (${op.kind}) is recorded from its call`);
}

/** What opKey gives for the op a call stands for; the owner tag is unique in the run. */
function callKey(method: LockMethod, wire: Record<string, unknown>): string {
  if (method === 'Proclaim')
    return `Proclaim/${String(wire.session_id)}/${String(wire.election)}/${String(wire.fencing_token)}/${String(wire.value)}`;
  if (method !== 'Release') return `${method}/${String(wire.owner)}`;
  return `Release/${String(wire.session_id)}/${String(wire.lock)}/${String(wire.fencing_token)}`;
}

/** The applied index the response header names. */
function answerIndexOf(response: Record<string, unknown>): number | undefined {
  const header = response.header as { index?: unknown } | undefined;
  return header?.index === undefined ? undefined : Number(header.index);
}
