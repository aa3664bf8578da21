import { utf8ByteLength } from '../util/utf8.ts';
import { LOCK_LIMIT_CEILINGS } from './limits.ts';
import { isIntegerIn, rejectField } from './records.ts';
import type { LockCommand } from './types.ts';

/**
 * The state machine's checks of a command's text and durations against a limit: each
 * refuses (invalidArgument, naming the field and the limit) or returns. They read no
 * state, so that the rules in force are passed in by whoever checks.
 */

/**
 * The ceiling of the request id a remembered result is looked up by: no rules allow
 * more, so a request above it is wrong whatever was applied before it.
 */
export function checkCeilings(command: LockCommand): void {
  if ('requestId' in command) {
    const { requestIdBytesMax } = LOCK_LIMIT_CEILINGS;
    checkText('requestId', command.requestId, requestIdBytesMax, 'its ceiling');
  }
}

/**
 * The name of a lock a client looks up (to release, cancel a wait, revoke): any
 * name a lock can have, so lowered rules do not strand the locks they left longer.
 */
export function checkLockName(name: string): void {
  checkText('lock', name, LOCK_LIMIT_CEILINGS.lockNameBytesMax, 'its ceiling');
}

/** `limit` names what `bytesMax` is: a rule (`ownerBytesMax`) or 'its ceiling'. */
export function checkText(
  field: string,
  value: string,
  bytesMax: number,
  limit: string,
  emptyAllowed = false,
): void {
  if (typeof value !== 'string') rejectField(field, 'must be a string');
  if (!emptyAllowed && value.length === 0) rejectField(field, 'must not be empty');
  const bytes = utf8ByteLength(value);
  if (bytes > bytesMax) {
    rejectField(field, `is ${bytes} bytes, the limit is ${bytesMax} (${limit})`);
  }
}

export function checkDuration(field: string, value: number, max: number, limit: string): void {
  if (!isIntegerIn(value, 0, max))
    rejectField(field, `must be within [0, ${max}] (${limit}), got ${value}`);
}
