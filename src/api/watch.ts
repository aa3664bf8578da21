import type { ServerWritableStream } from '@grpc/grpc-js';
import type { LockEvent } from '../lock/index.ts';
import type { LogIndex } from '../util/ids.ts';
import { type ApiContext, header } from './context.ts';
import { serveEventStream } from './event-stream.ts';
import { toUint64, type WatchEvent } from './proto.ts';
import { parseWatch } from './validate.ts';

type WatchCall = ServerWritableStream<unknown, WatchEvent>;

/**
 * Watch: streams grant, release and expire events of locks under a prefix, as this
 * node applies them, until the client cancels. Its authorization (`read` on the prefix),
 * bounded buffer and gaps are those of every event stream (event-stream.ts).
 */
export function watch(context: ApiContext, call: WatchCall): void {
  serveEventStream(context, call, {
    method: 'Watch',
    parse: parseWatch,
    follow: (prefix) => ({
      first: () => null,
      next: (index, event) =>
        'lock' in event && event.lock.startsWith(prefix) ? watchEvent(context, index, event) : null,
    }),
    afterGap: 're-read the locks (Describe) and watch again',
  });
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
