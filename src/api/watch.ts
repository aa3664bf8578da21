import { type Http2Stream, constants as http2Constants } from 'node:http2';
import { Metadata, type ServerWritableStream } from '@grpc/grpc-js';
import type { LockEvent } from '../lock/index.ts';
import type { LogIndex } from '../util/ids.ts';
import { ANONYMOUS, type Authenticator, type Caller } from './auth/caller.ts';
import { requirePermission } from './auth/guard.ts';
import { type ApiContext, header, serviceErrorOf } from './context.ts';
import { serviceError } from './errors.ts';
import { toUint64, type WatchEvent } from './proto.ts';
import { parseWatch } from './validate.ts';

type WatchCall = ServerWritableStream<unknown, WatchEvent>;

/**
 * Watch: streams grant, release and expire events of locks under a prefix, as this
 * node applies them, until the client cancels. Empty initial metadata is sent once the
 * subscription is live, so a client knows from which point on it sees every event.
 *
 * The stream's buffer is bounded: a client that cannot keep up is not allowed to grow
 * this node's memory. Once `watchEventsBufferedMax` events wait unsent, the stream
 * stops taking events and ends with RESOURCE_EXHAUSTED after what is buffered; the
 * client re-reads state (Describe) and watches again.
 *
 * A watcher sees every event or is told it did not: when this node catches up by
 * installing a snapshot, the commands the snapshot covers never ran here one by one, so
 * their events do not exist on this node. The stream then ends with ABORTED after the
 * events before the snapshot; the client re-reads state and watches again.
 */
export function watch(context: ApiContext, call: WatchCall): void {
  const auth = context.auth;
  if (auth === undefined) {
    watchAs(context, call, ANONYMOUS);
    return;
  }
  // The generation the credentials are checked under, read before the check: a reload
  // landing during a slow (scrypt) check must still make the first event check again.
  const generation = auth.generation;
  auth.authenticate(call).then(
    (caller) => watchAs(context, call, caller, generation),
    (error: unknown) => call.emit('error', serviceErrorOf(context, 'Watch', error)),
  );
}

/**
 * A watch of a prefix needs `read` on every name under it, for as long as it runs: one
 * whose caller loses it in a policy reload ends PERMISSION_DENIED (or UNAUTHENTICATED).
 */
function watchAs(context: ApiContext, call: WatchCall, caller: Caller, authGeneration = 0): void {
  let leave: () => void;
  let prefix: string;
  try {
    prefix = parseWatch(call.request);
    requirePermission(context.auth, caller, 'read', prefix);
    leave = context.gate.enter();
  } catch (error) {
    call.emit('error', serviceErrorOf(context, 'Watch', error));
    return;
  }
  // The caller's rights were checked at the start; after a policy reload, again before
  // the next event it would see.
  let checkedGeneration = authGeneration;
  const stillAllowed = (auth: Authenticator): boolean => {
    checkedGeneration = auth.generation;
    try {
      requirePermission(auth, caller, 'read', prefix);
    } catch (error) {
      refuse(error);
      return false;
    }
    // Its credentials too (its token may be gone); asynchronous, so this one event goes
    // out before the answer is known.
    auth
      .authenticate(call)
      .then((again) => requirePermission(auth, again, 'read', prefix))
      .catch(refuse);
    return true;
  };
  const refuse = (error: unknown): void => {
    if (stopped) return;
    stop();
    call.emit('error', serviceErrorOf(context, 'Watch', error));
  };
  const unsubscribe = context.events.onEvery((index, event) => {
    if (!('lock' in event) || !event.lock.startsWith(prefix)) return;
    const auth = context.auth;
    if (auth !== undefined && auth.generation !== checkedGeneration && !stillAllowed(auth)) return;
    const wire = watchEvent(context, index, event);
    if (wire === null) return;
    if (call.writableLength >= context.options.watchEventsBufferedMax) overflow();
    else call.write(wire);
  });
  const unsubscribeRestored = context.events.onRestored((index) => {
    stop();
    call.emit(
      'error',
      serviceError(
        'ABORTED',
        `${context.node.id} caught up by installing a snapshot at index ${index}, so events up to it were not seen one by one: re-read the locks (Describe) and watch again`,
        null,
      ),
    );
  });
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
    unsubscribeRestored();
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
        `watcher fell ${max} events behind`,
        null,
        context.options.backpressureRetryAfterMs,
      ),
    );
  };
  call.once('cancelled', stop);
  call.once('finish', stop);
  call.once('close', stop);
  call.sendMetadata(new Metadata());
}

/**
 * Resets the call's HTTP/2 stream (RST_STREAM CANCEL), dropping whatever it buffered.
 * grpc-js offers no way to abort a server call whose client stopped reading; its
 * stream is reached through the call's internals, read defensively (without them the
 * buffer stays bounded by watchEventsBufferedMax, just not freed before the client goes).
 */
function resetStream(call: WatchCall): void {
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

/**
 * An expiry is a release the holder did not ask for: its session lapsed, or the grant
 * reached its max-hold. Close and revoke free the lock on someone's request: RELEASE.
 */
function watchEvent(context: ApiContext, index: LogIndex, event: LockEvent): WatchEvent | null {
  const base = { header: header(context.node, index), index: toUint64(index) };
  switch (event.type) {
    case 'granted':
      return {
        ...base,
        type: 'GRANT',
        lock: event.lock,
        session_id: toUint64(event.holder.sessionId),
        fencing_token: toUint64(event.holder.token),
      };
    case 'released':
      return {
        ...base,
        type: event.reason === 'expire' || event.reason === 'maxHold' ? 'EXPIRE' : 'RELEASE',
        lock: event.lock,
        session_id: toUint64(event.sessionId),
        fencing_token: toUint64(event.token),
      };
    default:
      return null;
  }
}
