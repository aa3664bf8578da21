import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  ApiError,
  ELECTION_WIRE_NAMES,
  rejectionError,
  SEMAPHORE_WIRE_NAMES,
} from '../../src/api/errors.ts';
import {
  parseAcquirePermits,
  parseCampaign,
  parseLeader,
  parseObserve,
  parseProclaim,
  parseResign,
} from '../../src/api/validate.ts';
import { acquireError, DlmClientError, KindMismatchError } from '../../src/client/errors.ts';
import { KIND_LIMIT_CEILINGS } from '../../src/lock/index.ts';

/**
 * The edge checks and mappings of semaphores and elections (issue 17) on their own: each
 * request field is named in the wire's terms (a semaphore is `name`, an election
 * `election`, both the command's `lock`), and the client maps kindMismatch to its class.
 */
function problem(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ApiError && error.code === 'invalidArgument') return error.message;
    throw error;
  }
  throw new Error('no problem found');
}

const PERMITS = { name: 'pool', permits: '2', limit: '3', session_id: '7', request_id: '9' };
const CAMPAIGN = { election: 'svc', value: 'v', session_id: '7', request_id: '9' };

describe('parseAcquirePermits', () => {
  it('makes an AcquirePermits command of the semaphore `name`', () => {
    expect(parseAcquirePermits({ ...PERMITS, wait_ms: '100', owner: 'o' })).toEqual({
      type: 'AcquirePermits',
      lock: 'pool',
      permits: 2,
      limit: 3,
      sessionId: 7,
      waitMs: 100,
      requestId: '9',
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
  });

  it.each([
    [{ name: '' }, 'AcquirePermitsRequest.name: must not be empty'],
    [{ permits: '0' }, 'AcquirePermitsRequest.permits: must be within [1, '],
    [{ limit: '0' }, 'AcquirePermitsRequest.limit: must be within [1, '],
    [
      { permits: '4' },
      "AcquirePermitsRequest.permits: 4 is more than the semaphore's limit (3), so it could never be granted",
    ],
    [
      { limit: String(KIND_LIMIT_CEILINGS.semaphoreLimitMax + 1) },
      `AcquirePermitsRequest.limit: must be within [1, ${KIND_LIMIT_CEILINGS.semaphoreLimitMax}]`,
    ],
    [{ session_id: '0' }, 'AcquirePermitsRequest.session_id: must not be 0'],
  ])('refuses %j naming the field', (change, message) => {
    expect(problem(() => parseAcquirePermits({ ...PERMITS, ...change }))).toContain(message);
  });
});

describe('parseCampaign, parseProclaim, parseResign, parseLeader, parseObserve', () => {
  it('make the commands and queries of the election `election`', () => {
    expect(parseCampaign(CAMPAIGN)).toMatchObject({ type: 'Campaign', lock: 'svc', value: 'v' });
    expect(parseProclaim({ ...CAMPAIGN, fencing_token: '12' })).toEqual({
      type: 'Proclaim',
      lock: 'svc',
      sessionId: 7,
      token: 12,
      value: 'v',
      requestId: '9',
    });
    // Resign is the Release of the term's grant.
    expect(
      parseResign({ election: 'svc', session_id: '7', fencing_token: '12', request_id: '9' }),
    ).toEqual({ type: 'Release', lock: 'svc', sessionId: 7, token: 12, requestId: '9' });
    expect(parseLeader({ election: 'svc', stale: true })).toEqual({ election: 'svc', stale: true });
    expect(parseObserve({ election: 'svc' })).toBe('svc');
  });

  it.each([
    [
      () => parseCampaign({ ...CAMPAIGN, election: '' }),
      'CampaignRequest.election: must not be empty',
    ],
    [
      () =>
        parseCampaign({
          ...CAMPAIGN,
          value: 'x'.repeat(KIND_LIMIT_CEILINGS.electionValueBytesMax + 1),
        }),
      `CampaignRequest.value: is ${KIND_LIMIT_CEILINGS.electionValueBytesMax + 1} bytes, the limit is ${KIND_LIMIT_CEILINGS.electionValueBytesMax}`,
    ],
    [
      () => parseProclaim({ ...CAMPAIGN, fencing_token: '0' }),
      'ProclaimRequest.fencing_token: must not be 0',
    ],
    [
      () => parseResign({ election: 'svc', session_id: '7', fencing_token: '3', request_id: '0' }),
      'ResignRequest.request_id: must not be empty',
    ],
    [() => parseLeader({ election: 'svc', stale: 'yes' }), 'LeaderRequest.stale: must be a bool'],
    [() => parseObserve({}), 'ObserveRequest.election: must not be empty'],
  ])('refuses a bad field, naming it (%#)', (run, message) => {
    expect(problem(run)).toContain(message);
  });
});

describe("the state machine's refusals in the wire's terms", () => {
  it('names `lock` as the semaphore `name` or the `election`, and `token` as `fencing_token`', () => {
    const refused = (field: string, detail: string) =>
      ({ type: 'Rejected', code: 'invalidArgument', field, detail }) as const;
    expect(
      rejectionError(
        refused('limit', 'limit must be an integer within [1, 4] (semaphoreLimitMax), got 5'),
        'AcquirePermitsRequest',
        SEMAPHORE_WIRE_NAMES,
      ).message,
    ).toBe(
      'AcquirePermitsRequest.limit: must be an integer within [1, 4] (semaphoreLimitMax), got 5',
    );
    expect(
      rejectionError(
        refused('lock', 'lock is 300 bytes'),
        'AcquirePermitsRequest',
        SEMAPHORE_WIRE_NAMES,
      ).message,
    ).toBe('AcquirePermitsRequest.name: is 300 bytes');
    expect(
      rejectionError(refused('lock', 'lock is 300 bytes'), 'CampaignRequest', ELECTION_WIRE_NAMES)
        .message,
    ).toBe('CampaignRequest.election: is 300 bytes');
    expect(
      rejectionError(refused('token', 'token is stale'), 'ProclaimRequest', ELECTION_WIRE_NAMES)
        .message,
    ).toBe('ProclaimRequest.fencing_token: is stale');
  });
});

describe('the client maps kindMismatch', () => {
  it('to a decisive KindMismatchError; other FAILED_PRECONDITION answers stay as they are', () => {
    const refusal = new DlmClientError(
      'Lock.Acquire at n1: FAILED_PRECONDITION: "pool" is a semaphore (limit 2)',
      status.FAILED_PRECONDITION,
      'kindMismatch',
      null,
      null,
    );
    const mapped = acquireError(refusal, ['pool']);
    expect(mapped).toBeInstanceOf(KindMismatchError);
    expect((mapped as KindMismatchError).decisive).toBe(true);
    expect((mapped as KindMismatchError).outcomeUnknown).toBe(false);
    expect((mapped as KindMismatchError).message).toContain('is a semaphore (limit 2)');
    const other = new DlmClientError('x', status.FAILED_PRECONDITION, 'notHolder', null, null);
    expect(acquireError(other, ['pool'])).toBe(other);
  });
});
