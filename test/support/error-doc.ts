import { status } from '@grpc/grpc-js';

/**
 * Compares the one error table of the code (code → gRPC status number) with the table of
 * docs/errors.md (between its error-table markers). Returns every disagreement, each
 * naming the code: a code the doc lacks, a doc row whose code does not exist, a row whose
 * status differs, a row twice. Empty: they agree.
 */
export function errorTableDifferences(
  table: Readonly<Record<string, number>>,
  markdown: string,
): string[] {
  const rows = docRows(markdown);
  if (typeof rows === 'string') return [rows];
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const { code, grpcStatus } of rows) {
    if (seen.has(code)) problems.push(`docs/errors.md lists ${code} twice`);
    seen.set(code, grpcStatus);
    if (!Object.hasOwn(table, code)) {
      problems.push(`docs/errors.md lists ${code}, which is not a code of the error table`);
      continue;
    }
    const expected = status[table[code] as number];
    if (grpcStatus !== expected) {
      problems.push(`docs/errors.md gives ${code} the status ${grpcStatus}, the code ${expected}`);
    }
  }
  for (const code of Object.keys(table)) {
    if (!seen.has(code)) problems.push(`docs/errors.md has no row for ${code}`);
  }
  return problems;
}

const START = '<!-- error-table:start -->';
const END = '<!-- error-table:end -->';

function docRows(markdown: string): { code: string; grpcStatus: string }[] | string {
  const start = markdown.indexOf(START);
  const end = markdown.indexOf(END);
  if (start === -1 || end < start) return `docs/errors.md lacks the ${START} ... ${END} markers`;
  const rows: { code: string; grpcStatus: string }[] = [];
  for (const line of markdown.slice(start + START.length, end).split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    // | `code` | `STATUS` | ... : the header and the separator row have no backquoted code.
    const code = /^`([^`]+)`$/.exec(cells[1] ?? '')?.[1];
    const grpcStatus = /^`([^`]+)`$/.exec(cells[2] ?? '')?.[1];
    if (code === undefined || grpcStatus === undefined) continue;
    rows.push({ code, grpcStatus });
  }
  return rows;
}
