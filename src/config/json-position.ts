/**
 * Where a JSON text first goes wrong. V8's JSON.parse names a position for some errors
 * and not for others ("Unexpected token 'x', … is not valid JSON"), and an operator
 * editing a config needs the line and column. This recognizer follows RFC 8259
 * exactly, as JSON.parse does, and is run only on text JSON.parse has refused.
 */
export interface JsonSyntaxError {
  /** Offset in UTF-16 code units, like JavaScript string indexes. */
  readonly offset: number;
  readonly line: number;
  readonly column: number;
  readonly reason: string;
}

/** Recursion guard: past it we give up locating, and the caller keeps V8's message. */
const NESTING_DEPTH_MAX = 512;

class Stop {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {}
}

class GiveUp {}

export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const scanner = new Scanner(text);
  try {
    scanner.document();
    return undefined;
  } catch (error) {
    if (error instanceof GiveUp) return undefined;
    if (!(error instanceof Stop)) throw error;
    return { ...lineAndColumn(text, error.offset), offset: error.offset, reason: error.reason };
  }
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: offset - lineStart + 1 };
}

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't']);
const NUMBER_PATTERN = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4_PATTERN = /[0-9a-fA-F]{4}/y;

class Scanner {
  private offset = 0;
  private depth = 0;

  constructor(private readonly text: string) {}

  document(): void {
    this.value();
    this.skipWhitespace();
    if (this.offset < this.text.length) this.fail('unexpected text after the JSON value');
  }

  private value(): void {
    this.skipWhitespace();
    const char = this.text[this.offset];
    if (char === '{') this.nested(() => this.object());
    else if (char === '[') this.nested(() => this.array());
    else if (char === '"') this.string();
    else if (char === '-' || (char !== undefined && char >= '0' && char <= '9')) this.number();
    else this.literal();
  }

  private nested(scan: () => void): void {
    if (++this.depth > NESTING_DEPTH_MAX) throw new GiveUp();
    this.offset++;
    scan();
    this.depth--;
  }

  private object(): void {
    this.skipWhitespace();
    if (this.consume('}')) return;
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.offset] !== '"') this.fail('expected a double-quoted property name');
      this.string();
      this.skipWhitespace();
      if (!this.consume(':')) this.fail("expected ':' after a property name");
      this.value();
      this.skipWhitespace();
      if (this.consume('}')) return;
      if (!this.consume(',')) this.fail("expected ',' or '}' after a property value");
    }
  }

  private array(): void {
    this.skipWhitespace();
    if (this.consume(']')) return;
    for (;;) {
      this.value();
      this.skipWhitespace();
      if (this.consume(']')) return;
      if (!this.consume(',')) this.fail("expected ',' or ']' after an array element");
    }
  }

  private string(): void {
    this.offset++;
    for (;;) {
      const char = this.text[this.offset];
      if (char === undefined) this.fail('unterminated string');
      if (char === '"') break;
      if (char < ' ') this.fail('control character in a string (escape it)');
      if (char === '\\') this.escape();
      else this.offset++;
    }
    this.offset++;
  }

  private escape(): void {
    const char = this.text[this.offset + 1];
    if (char === 'u') {
      HEX4_PATTERN.lastIndex = this.offset + 2;
      if (!HEX4_PATTERN.test(this.text)) this.fail('expected four hex digits after \\u');
      this.offset += 6;
    } else if (char !== undefined && ESCAPES.has(char)) {
      this.offset += 2;
    } else {
      this.fail('invalid escape in a string');
    }
  }

  private number(): void {
    NUMBER_PATTERN.lastIndex = this.offset;
    const match = NUMBER_PATTERN.exec(this.text);
    if (match === null) this.fail('invalid number');
    this.offset += match[0].length;
    // A number must end where the pattern stops: "01", "1.", "1e" are refused here.
    const next = this.text[this.offset];
    if (next !== undefined && /[0-9.eE+-]/.test(next)) this.fail('invalid number');
  }

  private literal(): void {
    for (const word of ['true', 'false', 'null']) {
      if (this.text.startsWith(word, this.offset)) {
        this.offset += word.length;
        return;
      }
    }
    const char = this.text[this.offset];
    this.fail(
      char === undefined ? 'unexpected end of input' : `unexpected ${JSON.stringify(char)}`,
    );
  }

  private skipWhitespace(): void {
    while (WHITESPACE.has(this.text[this.offset] ?? '')) this.offset++;
  }

  private consume(char: string): boolean {
    if (this.text[this.offset] !== char) return false;
    this.offset++;
    return true;
  }

  private fail(reason: string): never {
    throw new Stop(
      this.offset,
      this.offset >= this.text.length ? 'unexpected end of input' : reason,
    );
  }
}
