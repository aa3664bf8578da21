/**
 * A cluster config that cannot run. It is an operating error, not a programmer error:
 * the operator fixes the file, so the error lists every problem at once, each led by
 * the path of the field it is about, instead of stopping at the first.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** Each problem reads `<field path>: <what is wrong>`. Never empty. */
  readonly problems: readonly string[];
  /** The file the config came from, when it came from one. */
  readonly source: string | undefined;

  constructor(problems: readonly string[], source?: string) {
    super(renderMessage(problems, source));
    this.problems = Object.freeze([...problems]);
    this.source = source;
  }

  /** The same problems, attributed to the file they were read from. */
  withSource(source: string): ConfigError {
    return new ConfigError(this.problems, source);
  }
}

/** A hostile file can hold thousands of problems; the first ones are enough to start fixing. */
const RENDERED_PROBLEMS_MAX = 50;

function renderMessage(problems: readonly string[], source: string | undefined): string {
  const where = source === undefined ? 'cluster config' : `cluster config ${source}`;
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  const shown = problems.slice(0, RENDERED_PROBLEMS_MAX).map((problem) => `  ${problem}`);
  const hidden = problems.length - shown.length;
  if (hidden > 0) shown.push(`  … and ${hidden} more`);
  return [`invalid ${where} (${count}):`, ...shown].join('\n');
}
