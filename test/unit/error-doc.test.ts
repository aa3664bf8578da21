import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GRPC_STATUS_BY_CODE } from '../../src/api/errors.ts';
import { errorTableDifferences } from '../support/error-doc.ts';

/**
 * docs/errors.md and the one error table of the code (GRPC_STATUS_BY_CODE) must agree
 * row for row: a new code without a doc row, a doc row for a code that is gone, and a
 * different gRPC status all fail here.
 */
const DOC = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

describe('docs/errors.md and the error table', () => {
  it('agree: every code has a row with its gRPC status, and every row is a code', () => {
    expect(errorTableDifferences(GRPC_STATUS_BY_CODE, DOC)).toEqual([]);
  });

  it('the check has teeth: each kind of disagreement is named', () => {
    // A code added to the table without a doc row.
    expect(errorTableDifferences({ ...GRPC_STATUS_BY_CODE, undocumentedCode: 9 }, DOC)).toEqual([
      'docs/errors.md has no row for undocumentedCode',
    ]);
    // A doc row whose code does not exist.
    const { grantEnded: _gone, ...withoutGrantEnded } = GRPC_STATUS_BY_CODE;
    expect(errorTableDifferences(withoutGrantEnded, DOC)).toEqual([
      'docs/errors.md lists grantEnded, which is not a code of the error table',
    ]);
    // A row with another status.
    const wrong = DOC.replace(
      /(\| `notHolder` +\| )`FAILED_PRECONDITION`/,
      '$1`PERMISSION_DENIED`',
    );
    expect(wrong).not.toBe(DOC);
    expect(errorTableDifferences(GRPC_STATUS_BY_CODE, wrong)).toEqual([
      'docs/errors.md gives notHolder the status PERMISSION_DENIED, the code FAILED_PRECONDITION',
    ]);
    expect(errorTableDifferences(GRPC_STATUS_BY_CODE, 'no table')).toHaveLength(1);
  });
});
