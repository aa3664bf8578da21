/** The mode of a grant, as a handle reports it. */
export type GrantMode = 'exclusive' | 'shared';

/** Wire names (proto enum Mode). Requests accept either spelling. */
export type LockMode = 'EXCLUSIVE' | 'SHARED';

export function grantModeOf(mode: LockMode | GrantMode | undefined): GrantMode {
  return mode === 'SHARED' || mode === 'shared' ? 'shared' : 'exclusive';
}

export function wireModeOf(mode: GrantMode): LockMode {
  return mode === 'shared' ? 'SHARED' : 'EXCLUSIVE';
}

/** A wire enum name as a mode; null for anything else (an absent field, a number). */
function parseWireMode(value: unknown): GrantMode | null {
  if (value === 'SHARED') return 'shared';
  if (value === 'EXCLUSIVE') return 'exclusive';
  return null;
}

/**
 * The mode of the grant an `Acquired` answer stands for, from the best evidence there
 * is: the mode the answer states (a field newer servers may send), the mode of this
 * session's entry among the holders, co-holders (an exclusive grant has none), the
 * mode of a live handle of this session on the same grant (re-acquiring a held lock
 * returns the grant the session has, in its mode), and last the mode asked for.
 */
export function grantedMode(
  answer: Record<string, unknown>,
  sessionId: string,
  asked: GrantMode,
  sameGrantHandleMode: GrantMode | null,
): GrantMode {
  const stated = parseWireMode(answer.mode);
  if (stated !== null) return stated;
  const holders = (Array.isArray(answer.holders) ? answer.holders : []) as Record<
    string,
    unknown
  >[];
  const own = holders.find((holder) => String(holder.session_id) === sessionId);
  const ownMode = own === undefined ? null : parseWireMode(own.mode);
  if (ownMode !== null) return ownMode;
  if (holders.some((holder) => String(holder.session_id) !== sessionId)) return 'shared';
  return sameGrantHandleMode ?? asked;
}
