/**
 * The environment dlm gives the node processes it starts (`dlm cluster`, the bench, the
 * test and Jepsen clusters): the caller's, plus glibc malloc settings that a node's
 * memory needs, each only where the caller has not set that variable itself.
 *
 * Why (issue 12, measured on 3-node clusters holding 100,000 locks): glibc serves a
 * freed block of up to 32 MB from its heap from then on (its mmap threshold rises to the
 * size of the largest block freed), and a heap rarely shrinks; with up to 8 arenas a core,
 * one per thread that allocates (LevelDB's and libuv's threads among them), each keeps
 * its own. The snapshot's buffers, LevelDB's batches and grpc's messages left 150-250 MB
 * of freed memory resident per node: worst node RSS after the fill 643-704 MB with
 * glibc's defaults, 442 MB with these (docs/operations.md, "Memory").
 *
 * glibc reads these when the process starts, so they must be in its environment: an
 * operator who runs `dlm serve` another way sets them there (systemd `Environment=`,
 * a container's env).
 */
export const NODE_MALLOC_ENV: Readonly<Record<string, string>> = {
  // Two arenas: threads share them rather than each keeping freed memory of its own.
  MALLOC_ARENA_MAX: '2',
  // A fixed threshold (128 KiB, glibc's starting value): larger blocks are mmapped and
  // given back when freed. Setting it also stops the threshold from rising.
  MALLOC_MMAP_THRESHOLD_: '131072',
};

/** `base` with NODE_MALLOC_ENV's variables added where `base` lacks them. */
export function nodeProcessEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const [name, value] of Object.entries(NODE_MALLOC_ENV)) {
    if (env[name] === undefined) env[name] = value;
  }
  return env;
}
