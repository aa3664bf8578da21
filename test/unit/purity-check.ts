/**
 * Static purity and import-boundary checks for the pure cores (src/raft, src/lock,
 * and src/util which they import).
 *
 * The pure cores must replay exactly from a seed, so they may not read clocks, draw
 * their own randomness, schedule work, or touch the process or the file system. They
 * also import only their own folder and src/util (DESIGN.md §2). Both rules are checked
 * here on source text, as a pure function, so the test can prove the checker catches
 * bad snippets.
 *
 * This is a small hand-written lexer, not a TypeScript parser. It understands line and
 * block comments, quoted strings and template literals (with `${…}` nesting). It does
 * not understand regular-expression literals, so a regex containing a quote or `//`
 * can confuse it; the pure cores have no reason to use such regexes.
 */

import { builtinModules } from 'node:module';
import { posix } from 'node:path';

export interface PurityViolation {
  /** Repository-relative path, as given to findPurityViolations. */
  readonly file: string;
  /** 1-based line number. */
  readonly line: number;
  readonly rule: string;
  /** The offending line with comments removed, trimmed. */
  readonly text: string;
}

/** Forbidden APIs: each is a source of time, randomness, scheduling or process state. */
const forbiddenPatterns: ReadonlyArray<{ readonly rule: string; readonly pattern: RegExp }> = [
  { rule: 'Date', pattern: /\bDate\b/ },
  { rule: 'Math.random', pattern: /\bMath\s*\.\s*random\b/ },
  { rule: 'setTimeout', pattern: /\bsetTimeout\b/ },
  { rule: 'setInterval', pattern: /\bsetInterval\b/ },
  { rule: 'setImmediate', pattern: /\bsetImmediate\b/ },
  { rule: 'queueMicrotask', pattern: /\bqueueMicrotask\b/ },
  { rule: 'performance', pattern: /\bperformance\b/ },
  { rule: 'process.hrtime', pattern: /\bprocess\s*\.\s*hrtime\b/ },
  { rule: 'process.', pattern: /\bprocess\s*\./ },
  // Global Web Crypto (crypto.randomUUID, crypto.getRandomValues) is a hidden RNG.
  { rule: 'crypto.', pattern: /\bcrypto\s*\./ },
  { rule: 'require(', pattern: /\brequire\s*\(/ },
  { rule: 'globalThis', pattern: /\bglobalThis\b/ },
];

const nodeBuiltins: ReadonlySet<string> = new Set(
  builtinModules.map((name) => name.replace(/^node:/, '')),
);

interface Lexed {
  /** Source with comments replaced by spaces; strings intact; same length and lines. */
  readonly code: string;
  /** Like code, but with string and template contents replaced by spaces too. */
  readonly masked: string;
  /** Every complete string literal (quoted or template without substitutions). */
  readonly strings: ReadonlyArray<{ readonly start: number; readonly value: string }>;
}

/** Replaces every character except newlines with a space, keeping offsets and lines. */
function blank(text: string): string {
  return text.replace(/[^\n]/g, ' ');
}

function lex(source: string): Lexed {
  let code = '';
  let masked = '';
  const strings: Array<{ start: number; value: string }> = [];
  // Brace depth of each open `${` substitution, innermost last.
  const templateBraces: number[] = [];
  let i = 0;

  const emit = (text: string, isStringContent: boolean): void => {
    code += text;
    masked += isStringContent ? blank(text) : text;
  };

  // Scans template text starting after a backtick or a closing `}` of a substitution.
  const scanTemplate = (start: number): void => {
    let j = start;
    let value = '';
    while (j < source.length) {
      const ch = source[j];
      if (ch === '\\') {
        value += source.slice(j, j + 2);
        j += 2;
      } else if (ch === '`') {
        emit(source.slice(start, j), true);
        emit('`', false);
        if (source[start - 1] === '`') strings.push({ start: start - 1, value });
        i = j + 1;
        return;
      } else if (ch === '$' && source[j + 1] === '{') {
        emit(source.slice(start, j), true);
        emit('${', false);
        templateBraces.push(0);
        i = j + 2;
        return;
      } else {
        value += ch;
        j += 1;
      }
    }
    emit(source.slice(start), true);
    i = source.length;
  };

  while (i < source.length) {
    const ch = source[i];
    const next = source[i + 1];
    if (ch === '/' && next === '/') {
      const end = source.indexOf('\n', i);
      const stop = end === -1 ? source.length : end;
      const comment = blank(source.slice(i, stop));
      code += comment;
      masked += comment;
      i = stop;
    } else if (ch === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? source.length : end + 2;
      const comment = blank(source.slice(i, stop));
      code += comment;
      masked += comment;
      i = stop;
    } else if (ch === "'" || ch === '"') {
      let j = i + 1;
      let value = '';
      while (j < source.length && source[j] !== ch && source[j] !== '\n') {
        if (source[j] === '\\') {
          value += source.slice(j, j + 2);
          j += 2;
        } else {
          value += source[j];
          j += 1;
        }
      }
      emit(ch, false);
      emit(source.slice(i + 1, j), true);
      if (source[j] === ch) {
        emit(ch, false);
        strings.push({ start: i, value });
        i = j + 1;
      } else {
        i = j;
      }
    } else if (ch === '`') {
      emit('`', false);
      scanTemplate(i + 1);
    } else if (templateBraces.length > 0 && (ch === '{' || ch === '}')) {
      const depth = templateBraces[templateBraces.length - 1] ?? 0;
      if (ch === '{') {
        templateBraces[templateBraces.length - 1] = depth + 1;
        emit(ch, false);
        i += 1;
      } else if (depth > 0) {
        templateBraces[templateBraces.length - 1] = depth - 1;
        emit(ch, false);
        i += 1;
      } else {
        // The `}` closing a substitution resumes the template text.
        templateBraces.pop();
        emit('}', false);
        scanTemplate(i + 1);
      }
    } else {
      emit(ch ?? '', false);
      i += 1;
    }
  }
  return { code, masked, strings };
}

/**
 * Text that, right before a string literal, makes that string a module specifier:
 * `from '…'`, `import '…'`, `import('…')`, `require('…')`. Matched on masked text, so
 * words inside other strings and comments never count.
 */
const specifierPrefix = /(?:\bfrom|\bimport|\bimport\s*\(|\brequire\s*\()\s*$/;

/** The module folder a file belongs to: `src/<name>` for sources, else its directory. */
function moduleFolder(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'src' && parts.length > 2) return `src/${parts[1]}`;
  return posix.dirname(file);
}

/** Returns why `specifier` may not be imported from `file`, or undefined if it may. */
function importViolation(file: string, specifier: string): string | undefined {
  if (specifier.startsWith('node:')) return `imports Node builtin '${specifier}'`;
  if (specifier.startsWith('/')) return `imports absolute path '${specifier}'`;
  if (!specifier.startsWith('.')) {
    const root = specifier.split('/')[0] ?? specifier;
    if (nodeBuiltins.has(root) || nodeBuiltins.has(specifier)) {
      return `imports Node builtin '${specifier}'`;
    }
    return `imports package '${specifier}' (pure cores have no dependencies)`;
  }
  const own = moduleFolder(file);
  const target = posix.normalize(posix.join(posix.dirname(file), specifier));
  const inside = (folder: string): boolean => target.startsWith(`${folder}/`);
  if (inside(own) || inside('src/util')) return undefined;
  return `imports '${specifier}' (resolves to ${target}; only ${own}/ and src/util/ are allowed)`;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let k = 0; k < offset; k++) if (text.charCodeAt(k) === 10) line += 1;
  return line;
}

/**
 * Finds purity and import-boundary violations in one source file.
 *
 * @param fileName repository-relative path with forward slashes, e.g. `src/raft/log.ts`;
 *   it decides which folder the file may import from.
 * @param sourceText the file's contents.
 */
export function findPurityViolations(fileName: string, sourceText: string): PurityViolation[] {
  const { code, masked, strings } = lex(sourceText);
  const codeLines = code.split('\n');
  const violations: PurityViolation[] = [];

  // Forbidden APIs are matched with string contents blanked, so a module specifier
  // like './process.ts' or an error message is not mistaken for a call.
  masked.split('\n').forEach((lineText, index) => {
    for (const { rule, pattern } of forbiddenPatterns) {
      if (pattern.test(lineText)) {
        const text = (codeLines[index] ?? '').trim();
        violations.push({ file: fileName, line: index + 1, rule, text });
      }
    }
  });

  for (const literal of strings) {
    if (!specifierPrefix.test(masked.slice(Math.max(0, literal.start - 200), literal.start))) {
      continue;
    }
    const reason = importViolation(fileName, literal.value);
    if (reason === undefined) continue;
    const line = lineOf(sourceText, literal.start);
    violations.push({
      file: fileName,
      line,
      rule: reason,
      text: (codeLines[line - 1] ?? '').trim(),
    });
  }

  return violations.sort((a, b) => a.line - b.line);
}

export function formatViolation(v: PurityViolation): string {
  return `${v.file}:${v.line}: ${v.rule}: ${v.text}`;
}
