import { type Http2Stream, constants as http2Constants } from 'node:http2';
import { Metadata, type ServerWritableStream } from '@grpc/grpc-js';
import type { LockEvent } from '../lock/index.ts';
import type { LogIndex } from '../util/ids.ts';
import { ANONYMOUS, type Authenticator, type Caller } from './auth/caller.ts';
import { requirePermission } from './auth/guard.ts';
import { type ApiContext, serviceErrorOf } from './context.ts';
import { ApiError, serviceError } from './errors.ts';

/**
 * A server stream of what this node applies, as Watch (a prefix's grants and releases)
 * and Observe (an election's leadership) send it. One machinery for both, so that their
 * authorization, bounds and gaps cannot drift apart:
 *
 * - The caller needs `read` on the stream's name (or prefix), for as long as it runs:
 *   one whose caller loses it in a policy reload ends PERMISSION_DENIED (or
 *   UNAUTHENTICATED).
 * - Empty initial metadata is sent once the subscription is live (after the first
 *   message, if the stream has one), so a client knows from which point on it sees
 *   every change.
 * - The stream's buffer is bounded: a client that cannot keep up is not allowed to grow
 *   this node's memory. Once `watchEventsBufferedMax` messages wait unsent, the stream
 *   stops taking events and ends with RESOURCE_EXHAUSTED after what is buffered.
 * - A follower sees every event or is told it did not: when this node catches up by
 *   installing a snapshot, the commands the snapshot covers never ran here one by one, so
 *   their events do not exist on this node. The stream then ends with ABORTED after the
 *   messages before the snapshot.
 * - A follower that throws (an ApiError) ends the stream with that error.
 * - With `endsWhenLeaderLost` (Observe), a node that knows no leader refuses the
 *   stream, and one that loses it later (EventHub.onLeaderLost: no leader, or a
 *   confirming read that ran out of time) ends it UNAVAILABLE: cut off from the leader
 *   it applies nothing, and a stream that stayed open would be silent about every
 *   change made meanwhile (a LeadershipHandle would not learn that its term ended). The
 *   client reopens at another node.
 */
export interface EventStreamSpec<Wire> {
  /** The RPC, for logs and errors. */
  readonly method: string;
  /** Validates the request; returns the name (or prefix) the caller needs `read` on. */
  readonly parse: (raw: unknown) => string;
  /** What the stream follows for one call: its state lives in the follower. */
  readonly follow: (target: string) => EventFollower<Wire>;
  /** What a client does after a gap (ABORTED), for the error's message. */
  readonly afterGap: string;
  /** End the stream UNAVAILABLE whenever this node may have lost the leader (see above). */
  readonly endsWhenLeaderLost?: boolean;
}

export interface EventFollower<Wire> {
  /** The message sent before any event (Observe's CURRENT); null sends none. */
  first(): Wire | null;
  /** The message an applied event makes, read after its entry applied; null sends none. */
  next(index: LogIndex, event: LockEvent): Wire | null;
}

type StreamCall<Wire> = ServerWritableStream<unknown, Wire>;

export function serveEventStream<Wire>(
  context: ApiContext,
  call: StreamCall<Wire>,
  spec: EventStreamSpec<Wire>,
): void {
  const auth = context.auth;
  if (auth === undefined) {
    streamAs(context, call, spec, ANONYMOUS);
    return;
  }
  // The generation the credentials are checked under, read before the check: a reload
  // landing during a slow (scrypt) check must still make the first event check again.
  const generation = auth.generation;
  auth.authenticate(call).then(
    (caller) => streamAs(context, call, spec, caller, generation),
    (error: unknown) => call.emit('error', serviceErrorOf(context, spec.method, error)),
  );
}

function streamAs<Wire>(
  context: ApiContext,
  call: StreamCall<Wire>,
  spec: EventStreamSpec<Wire>,
  caller: Caller,
  authGeneration = 0,
): void {
  // Cancelled while its credentials were checked: its 'cancelled' has fired already, so
  // nothing below would ever stop it (its gate slot and listeners would stay).
  if (call.cancelled) return;
  let leave: () => void;
  let target: string;
  let follower: EventFollower<Wire>;
  try {
    target = spec.parse(call.request);
    requirePermission(context.auth, caller, 'read', target);
    if (spec.endsWhenLeaderLost === true && context.node.status().leaderId === null) {
      throw noLeaderError(`${context.node.id} knows no leader`, spec.method);
    }
    follower = spec.follow(target);
    leave = context.gate.enter();
  } catch (error) {
    call.emit('error', serviceErrorOf(context, spec.method, error));
    return;
  }
  // The caller's rights were checked at the start; after a policy reload, again before
  // the next event it would see.
  let checkedGeneration = authGeneration;
  const stillAllowed = (auth: Authenticator): boolean => {
    checkedGeneration = auth.generation;
    try {
      requirePermission(auth, caller, 'read', target);
    } catch (error) {
      refuse(error);
      return false;
    }
    // Its credentials too (its token may be gone); asynchronous, so this one event goes
    // out before the answer is known.
    auth
      .authenticate(call)
      .then((again) => requirePermission(auth, again, 'read', target))
      .catch(refuse);
    return true;
  };
  const refuse = (error: unknown): void => {
    if (stopped) return;
    stop();
    call.emit('error', serviceErrorOf(context, spec.method, error));
  };
  const send = (wire: Wire): void => {
    if (call.writableLength >= context.options.watchEventsBufferedMax) overflow();
    else call.write(wire);
  };
  const unsubscribe = context.events.onEvery((index, event) => {
    if (stopped) return;
    const auth = context.auth;
    if (auth !== undefined && auth.generation !== checkedGeneration && !stillAllowed(auth)) return;
    let wire: Wire | null;
    try {
      wire = follower.next(index, event);
    } catch (error) {
      refuse(error);
      return;
    }
    if (wire !== null) send(wire);
  });
  const unsubscribeRestored = context.events.onRestored((index) => {
    stop();
    call.emit(
      'error',
      serviceError(
        'ABORTED',
        `${context.node.id} caught up by installing a snapshot at index ${index}, so events up to it were not seen one by one: ${spec.afterGap}`,
        null,
      ),
    );
  });
  const unsubscribeLeaderLost =
    spec.endsWhenLeaderLost === true
      ? context.events.onLeaderLost((why) => refuse(noLeaderError(why, spec.method)))
      : () => {};
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
    unsubscribeRestored();
    unsubscribeLeaderLost();
    leave();
  };
  const overflow = (): void => {
    stop();
    // The status goes out after the buffered events, that is never to a client that does
    // not read: past the grace the stream is reset, which frees them.
    const cutoff = setTimeout(() => resetStream(call), context.options.watchCutoffGraceMs);
    cutoff.unref();
    call.once('close', () => clearTimeout(cutoff));
    const max = context.options.watchEventsBufferedMax;
    call.emit(
      'error',
      serviceError(
        'RESOURCE_EXHAUSTED',
        `${spec.method} stream fell ${max} events behind`,
        null,
        context.options.backpressureRetryAfterMs,
      ),
    );
  };
  call.once('cancelled', stop);
  call.once('finish', stop);
  call.once('close', stop);
  // Read in the same turn as the subscription started: no entry applies in between, so
  // the first message and the events after it leave no gap and repeat nothing.
  let first: Wire | null;
  try {
    first = follower.first();
  } catch (error) {
    refuse(error);
    return;
  }
  call.sendMetadata(new Metadata());
  if (first !== null) send(first);
}

function noLeaderError(why: string, method: string): ApiError {
  return new ApiError(
    'UNAVAILABLE',
    `${why}, so it may not see what changes: ${method} again at another node`,
  );
}

/**
 * Resets the call's HTTP/2 stream (RST_STREAM CANCEL), dropping whatever it buffered.
 * grpc-js offers no way to abort a server call whose client stopped reading; its
 * stream is reached through the call's internals, read defensively (without them the
 * buffer stays bounded by watchEventsBufferedMax, just not freed before the client goes).
 */
function resetStream<Wire>(call: StreamCall<Wire>): void {
  let layer = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && layer !== null && typeof layer === 'object'; depth++) {
    const stream = (layer as { stream?: Http2Stream }).stream;
    if (stream !== undefined && typeof stream.close === 'function') {
      if (!stream.closed) stream.close(http2Constants.NGHTTP2_CANCEL);
      call.destroy();
      return;
    }
    layer = (layer as { nextCall?: unknown }).nextCall;
  }
}
