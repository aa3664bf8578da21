/**
 * The flags of a small bench script: `--name N` pairs, each a positive integer up to
 * `limit`, with defaults. A bad or unknown flag prints why, prefixed with the script's
 * name, and exits 2.
 */
export function parseIntFlags<Flag extends string>(
  script: string,
  argv: readonly string[],
  defaults: Readonly<Record<Flag, number>>,
  limit = 1_000_000,
): Record<Flag, number> {
  const fail = (message: string): never => {
    process.stderr.write(`${script}: ${message}\n`);
    process.exit(2);
  };
  const args: Record<Flag, number> = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] as Flag;
    const value = Number(argv[i + 1]);
    if (!(flag in defaults))
      fail(`unknown argument ${flag}; use ${Object.keys(defaults).join(', ')}`);
    if (!Number.isSafeInteger(value) || value < 1 || value > limit) {
      fail(`${flag} needs an integer in [1, ${limit}]`);
    }
    args[flag] = value;
  }
  return args;
}
