import { describe, expect, it } from 'vitest';
import { ApiError } from '../../src/api/errors.ts';
import {
  LOCK_SERVICE,
  UndecodableRequest,
  uint64Text,
  uint64ToNumber,
} from '../../src/api/proto.ts';
import {
  parseAcquire,
  parseKeepAlive,
  parseOpenSession,
  parseRelease,
} from '../../src/api/validate.ts';
import { LOCK_LIMIT_CEILINGS } from '../../src/lock/index.ts';

/** The edge checks on their own, without a cluster: decoding, uint64 and field rules. */
function problem(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ApiError && error.code === 'invalidArgument') return error.message;
    throw error;
  }
  throw new Error('no problem found');
}

const decodeAcquire = (bytes: number[]): unknown =>
  LOCK_SERVICE.Acquire.requestDeserialize(Buffer.from(bytes));

describe('uint64 fields', () => {
  it('converts safe integers and refuses larger ones by name', () => {
    expect(uint64ToNumber('M.f', '9007199254740991')).toBe(2 ** 53 - 1);
    expect(problem(() => uint64ToNumber('M.f', '9007199254740992'))).toBe(
      'M.f: 9007199254740992 is above 2^53 - 1, the largest value dlm supports',
    );
    expect(problem(() => uint64ToNumber('M.f', '-1'))).toBe('M.f: must be a uint64, got "-1"');
    expect(problem(() => uint64ToNumber('M.f', {}))).toBe('M.f: must be a uint64, got an object');
  });

  it('keeps request ids as text over the whole uint64 range', () => {
    expect(uint64Text('M.r', '18446744073709551615')).toBe('18446744073709551615');
    expect(problem(() => uint64Text('M.r', '18446744073709551616'))).toContain(
      'M.r: must be a uint64',
    );
  });
});

describe('the strict wire check', () => {
  it('decodes a well-formed message and skips unknown fields', () => {
    // lock "x", then unknown field 100 (varint), then session_id 5.
    expect(decodeAcquire([0x0a, 0x01, 0x78, 0xa0, 0x06, 0x01, 0x10, 0x05])).toMatchObject({
      lock: 'x',
      session_id: '5',
    });
  });

  it('refuses wrong wire types, overruns, overlong varints and groups, naming the field', () => {
    const detail = (bytes: number[]) => (decodeAcquire(bytes) as UndecodableRequest).detail;
    expect(decodeAcquire([0x18, 0x01, 0x01])).toBeInstanceOf(UndecodableRequest);
    expect(detail([0x1a, 0x01, 0x01])).toBe('AcquireRequest.mode: has wire type 2, expected 0');
    expect(detail([0x32, 0x05, 0x61])).toBe(
      'AcquireRequest.owner: runs past the end of the message',
    );
    expect(detail([0x10, ...Array(10).fill(0xff), 0x01])).toBe(
      'AcquireRequest.session_id: is a varint longer than 10 bytes',
    );
    expect(detail([0xa3, 0x06])).toBe(
      'AcquireRequest field 100: uses a group, which proto3 does not have',
    );
    expect(detail([0x00])).toBe('AcquireRequest: invalid field number 0');
  });
});

describe('request fields', () => {
  const acquire = {
    lock: 'a',
    session_id: '1',
    mode: 'EXCLUSIVE',
    wait_ms: '0',
    request_id: '9',
    owner: '',
  };

  it('maps a valid Acquire to its command, with the added fields', () => {
    expect(
      parseAcquire({ ...acquire, mode: 'SHARED', max_hold_ms: '500', lock_delay_ms: '20' }),
    ).toEqual({
      type: 'Acquire',
      lock: 'a',
      sessionId: 1,
      mode: 'shared',
      waitMs: 0,
      requestId: '9',
      owner: '',
      maxHoldMs: 500,
      lockDelayMs: 20,
    });
  });

  it('names the first wrong field', () => {
    expect(problem(() => parseAcquire({ ...acquire, mode: 7 }))).toBe(
      'AcquireRequest.mode: unknown value 7',
    );
    // Only the ceilings no rules exceed: the rules in force are the state machine's to check.
    expect(problem(() => parseAcquire({ ...acquire, lock_delay_ms: '2147483648' }))).toBe(
      'AcquireRequest.lock_delay_ms: must be within [0, 2147483647], got 2147483648',
    );
    expect(problem(() => parseAcquire({ ...acquire, lock: 7 }))).toBe(
      'AcquireRequest.lock: must be a string, got 7',
    );
    expect(problem(() => parseOpenSession({ ttl_ms: '0', request_id: '1' }))).toBe(
      'OpenSessionRequest.ttl_ms: must be within [1, 2147483647], got 0',
    );
    expect(
      problem(() =>
        parseRelease({ lock: 'a', session_id: '1', fencing_token: '0', request_id: '1' }),
      ),
    ).toBe('ReleaseRequest.fencing_token: must not be 0');
    expect(problem(() => parseRelease(null))).toBe('ReleaseRequest: must be a message, got null');
  });

  it('measures names in UTF-8 bytes against the ceiling, as the state machine does', () => {
    const ceiling = LOCK_LIMIT_CEILINGS.lockNameBytesMax;
    const name = 'é'.repeat(ceiling / 2 + 1);
    expect(problem(() => parseAcquire({ ...acquire, lock: name }))).toBe(
      `AcquireRequest.lock: is ${ceiling + 2} bytes, the limit is ${ceiling}`,
    );
    // A name past the rules' default is left to the state machine, which lets a lock keep it.
    expect(parseAcquire({ ...acquire, lock: 'é'.repeat(129) }).lock).toHaveLength(129);
  });
});

describe('KeepAliveRequest.session_ids', () => {
  const ids = (count: number) => Array.from({ length: count }, (_, i) => String(i + 1));

  it('takes a batch up to the ceiling of keepAliveBatchMax', () => {
    const ceiling = LOCK_LIMIT_CEILINGS.keepAliveBatchMax;
    expect(parseKeepAlive({ session_id: '0', session_ids: ids(ceiling) }).sessionIds).toHaveLength(
      ceiling,
    );
  });

  it('refuses a longer batch before reading its ids, naming the field, count and ceiling', () => {
    const ceiling = LOCK_LIMIT_CEILINGS.keepAliveBatchMax;
    // The last id is invalid: the count is refused first, so no id is read.
    const tooMany = [...ids(ceiling), '0'];
    expect(problem(() => parseKeepAlive({ session_id: '0', session_ids: tooMany }))).toBe(
      `KeepAliveRequest.session_ids: holds ${ceiling + 1} ids, the ceiling is ${ceiling}`,
    );
  });
});
