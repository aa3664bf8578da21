import v8 from 'node:v8';
import vm from 'node:vm';
import { v8BooleanFlag, v8FlagsChangeable, v8FlagsFrozen } from './v8-flags.ts';

/**
 * A full, blocking garbage collection, for the few moments when a node has just made
 * a large amount of short-lived garbage and has nothing better to do than give the
 * memory back: after restoring a snapshot (see NodeRuntimeOptions.restoreCollectBytesMin).
 * Decoding a 30 MB snapshot makes some 130 MB of objects that restore drops at once, and
 * V8 starts its next major GC only once the heap grows to a multiple of what the last
 * one left alive: a node restarted at 100,000 held locks kept them as RSS (issue 12).
 *
 * The collection compacts: what restore keeps (names and ids cut from the decoded
 * objects, remembered results) lies scattered over pages the decoded garbage filled,
 * and a plain full collection frees the garbage but keeps nearly every page. Restarted
 * at 100,000 held locks, a node kept 203 MB of heap for 115 MB of live objects.
 *
 * V8 offers the collector to JavaScript only behind --expose-gc, which `dlm serve` is
 * not started with: the flag is set now, and the function taken from a new context,
 * the only one that sees it.
 */
export function collectGarbage(): void {
  collector ??= exposedGcOrNothing();
  collector();
}

/**
 * V8 compacts in a full collection only the pages its heuristics pick; with this flag
 * on, it compacts them all. Turned off again at once (unless the command line turned
 * it on), or every later collection would pay for it.
 */
const COMPACT_ALWAYS = 'compact-on-every-full-gc';

function compacting(gc: () => void): () => void {
  // A process started with --expose-gc may have a gc and still take no flag change.
  if (v8BooleanFlag(COMPACT_ALWAYS) || !v8FlagsChangeable()) return gc;
  return () => {
    v8.setFlagsFromString(`--${COMPACT_ALWAYS}`);
    try {
      gc();
    } finally {
      v8.setFlagsFromString(`--no-${COMPACT_ALWAYS}`);
    }
  };
}

let collector: (() => void) | null = null;

/**
 * A node that cannot collect on demand still runs, only with more memory: it warns once
 * (on stderr, in the node's log) and never asks again.
 */
function exposedGcOrNothing(): () => void {
  try {
    return compacting(exposedGc());
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    process.emitWarning(
      `dlm: cannot collect garbage on demand, so a restore keeps its garbage until V8 collects it: ${reason}`,
    );
    return () => {};
  }
}

/**
 * Setting the flag also gives every vm context and Worker made later a `gc` of its own;
 * dlm makes none. Under --freeze-flags-after-init V8 aborts the process on any flag
 * change (a check no try can catch), so that is asked first.
 */
function exposedGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  if (v8FlagsFrozen())
    throw new Error('node runs with --freeze-flags-after-init, so --expose-gc cannot be set');
  v8.setFlagsFromString('--expose-gc');
  const gc: unknown = vm.runInNewContext('gc');
  if (typeof gc !== 'function') throw new Error('V8 did not expose gc() after --expose-gc');
  return gc as () => void;
}
