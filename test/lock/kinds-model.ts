/**
 * The promise of semaphores and elections (issue 17), written from the promise to users
 * and not from the state machine: what each command must answer and leave behind, over a
 * few names used as plain (exclusive) locks, semaphores and elections. Lock-delays are
 * off. Each entry grants at most one holder per name; a name whose head waiter could be
 * granted owes a Promote.
 */

export type Kind = 'lock' | 'semaphore' | 'election';

export interface ModelGrant {
  readonly session: number;
  readonly token: number;
  readonly permits?: number;
  value?: string;
}

export interface ModelPlace {
  readonly session: number;
  readonly requestId: string;
  readonly index: number;
  readonly permits?: number;
  readonly value?: string;
}

export interface ModelName {
  readonly kind: Kind;
  readonly limit?: number;
  readonly holders: ModelGrant[];
  readonly queue: ModelPlace[];
}

/** What the promise says a command answers: a result type, and a token or a code. */
export type Expected =
  | { readonly type: 'Acquired'; readonly token: number }
  | { readonly type: 'Queued'; readonly position: number }
  | { readonly type: 'NotAcquired' | 'Released' | 'Proclaimed' | 'Stale' | 'Other' }
  | { readonly type: 'Promoted'; readonly session: number }
  | { readonly type: 'Rejected'; readonly code: string };

export interface Ask {
  readonly kind: Kind;
  readonly name: string;
  readonly session: number;
  readonly requestId: string;
  readonly waitMs: number;
  readonly limit?: number;
  readonly permits?: number;
  readonly value?: string;
}

export class KindPromise {
  readonly sessions = new Set<number>();
  readonly names = new Map<string, ModelName>();
  /** The highest token ever granted per name: every new grant's must be above it. */
  readonly lastToken = new Map<string, number>();
  private grantedNow = new Set<string>();
  private index = 0;

  /** Starts the entry at `index`; each entry grants at most one holder per name. */
  begin(index: number): void {
    this.index = index;
    this.grantedNow = new Set();
  }

  open(): Expected {
    this.sessions.add(this.index);
    return { type: 'Other' };
  }

  close(session: number): Expected {
    if (!this.sessions.has(session)) return { type: 'Rejected', code: 'sessionNotFound' };
    this.sessions.delete(session);
    const touched: string[] = [];
    for (const [name, entry] of this.names) {
      const before = entry.holders.length + entry.queue.length;
      remove(entry.holders, (grant) => grant.session === session);
      remove(entry.queue, (place) => place.session === session);
      if (entry.holders.length + entry.queue.length !== before) touched.push(name);
    }
    for (const name of touched) this.promote(name);
    return { type: 'Other' };
  }

  acquire(ask: Ask): Expected {
    if (!this.sessions.has(ask.session)) return { type: 'Rejected', code: 'sessionNotFound' };
    const entry = this.names.get(ask.name);
    if (entry !== undefined && (entry.kind !== ask.kind || entry.limit !== ask.limit)) {
      return { type: 'Rejected', code: 'kindMismatch' };
    }
    const held = entry?.holders.find((grant) => grant.session === ask.session);
    if (held !== undefined) {
      // The grant it has, unchanged (an election's value too); other permits: refused.
      if (held.permits !== ask.permits) return { type: 'Rejected', code: 'modeMismatch' };
      return { type: 'Acquired', token: held.token };
    }
    const position = entry?.queue.findIndex((place) => place.session === ask.session) ?? -1;
    const place = entry?.queue[position];
    if (place !== undefined) {
      if (place.permits !== ask.permits) return { type: 'Rejected', code: 'modeMismatch' };
      if (place.requestId === ask.requestId) return { type: 'Queued', position };
      return { type: 'Rejected', code: 'alreadyWaiting' };
    }
    const name = entry ?? this.create(ask);
    if (name.queue.length === 0 && this.fits(name, ask.permits)) {
      this.grant(ask.name, name, ask);
      return { type: 'Acquired', token: this.index };
    }
    if (ask.waitMs === 0) {
      this.dropIfIdle(ask.name);
      return { type: 'NotAcquired' };
    }
    if (ask.kind !== 'semaphore' && this.closesCycle(ask.session, ask.name)) {
      return { type: 'Rejected', code: 'deadlock' };
    }
    name.queue.push({
      session: ask.session,
      requestId: ask.requestId,
      index: this.index,
      ...(ask.permits === undefined ? {} : { permits: ask.permits }),
      ...(ask.value === undefined ? {} : { value: ask.value }),
    });
    return { type: 'Queued', position: name.queue.length - 1 };
  }

  release(session: number, name: string, token: number): Expected {
    if (!this.sessions.has(session)) return { type: 'Rejected', code: 'sessionNotFound' };
    const entry = this.names.get(name);
    const grant = entry?.holders.find((each) => each.session === session);
    if (entry === undefined || grant === undefined) return { type: 'Rejected', code: 'notHolder' };
    if (grant.token !== token) return { type: 'Rejected', code: 'staleToken' };
    remove(entry.holders, (each) => each === grant);
    this.promote(name);
    return { type: 'Released' };
  }

  proclaim(session: number, name: string, token: number, value: string): Expected {
    if (!this.sessions.has(session)) return { type: 'Rejected', code: 'sessionNotFound' };
    const entry = this.names.get(name);
    if (entry !== undefined && entry.kind !== 'election') {
      return { type: 'Rejected', code: 'kindMismatch' };
    }
    const grant = entry?.holders.find((each) => each.session === session);
    if (grant === undefined) return { type: 'Rejected', code: 'notHolder' };
    if (grant.token !== token) return { type: 'Rejected', code: 'staleToken' };
    grant.value = value;
    return { type: 'Proclaimed' };
  }

  waitExpired(session: number, name: string, index: number): Expected {
    const entry = this.names.get(name);
    const place = entry?.queue.find((each) => each.session === session);
    if (entry === undefined || place === undefined || place.index !== index) {
      return { type: 'Stale' };
    }
    remove(entry.queue, (each) => each === place);
    this.promote(name);
    return { type: 'Other' };
  }

  promoteEntry(name: string): Expected {
    const entry = this.names.get(name);
    if (entry === undefined || !this.headFits(entry)) return { type: 'Stale' };
    const head = entry.queue[0] as ModelPlace;
    this.promote(name);
    return { type: 'Promoted', session: head.session };
  }

  /** Whether `name` owes a Promote: its head waiter could be granted now. */
  owesPromote(name: string): boolean {
    const entry = this.names.get(name);
    return entry !== undefined && this.headFits(entry);
  }

  /** The head is granted if it fits and this entry has not granted the name yet. */
  private promote(name: string): void {
    const entry = this.names.get(name);
    if (entry === undefined) return;
    const head = entry.queue[0];
    if (head !== undefined && this.headFits(entry) && !this.grantedNow.has(name)) {
      entry.queue.shift();
      this.grant(name, entry, head);
    }
    this.dropIfIdle(name);
  }

  private headFits(entry: ModelName): boolean {
    const head = entry.queue[0];
    return head !== undefined && this.fits(entry, head.permits);
  }

  /** The promise: permits within the limit; one leader; one exclusive lock holder. */
  private fits(entry: ModelName, permits: number | undefined): boolean {
    if (entry.kind !== 'semaphore') return entry.holders.length === 0;
    const held = entry.holders.reduce((sum, grant) => sum + (grant.permits ?? 0), 0);
    return held + (permits ?? 0) <= (entry.limit ?? 0);
  }

  private grant(
    name: string,
    entry: ModelName,
    from: { session: number; permits?: number; value?: string },
  ): void {
    this.grantedNow.add(name);
    this.lastToken.set(name, this.index);
    entry.holders.push({
      session: from.session,
      token: this.index,
      ...(from.permits === undefined ? {} : { permits: from.permits }),
      ...(from.value === undefined ? {} : { value: from.value }),
    });
  }

  private create(ask: Ask): ModelName {
    const entry: ModelName = {
      kind: ask.kind,
      ...(ask.limit === undefined ? {} : { limit: ask.limit }),
      holders: [],
      queue: [],
    };
    this.names.set(ask.name, entry);
    return entry;
  }

  private dropIfIdle(name: string): void {
    const entry = this.names.get(name);
    if (entry !== undefined && entry.holders.length === 0 && entry.queue.length === 0) {
      this.names.delete(name);
    }
  }

  /**
   * Whether `session` waiting for `name` (a lock or an election, both exclusive) would
   * wait, through holders and waiters ahead, for itself. A wait for a semaphore is no
   * edge: any holder's release may free it.
   */
  private closesCycle(session: number, name: string): boolean {
    const blockersOf = (who: number, on: string, ahead: number): number[] => {
      const entry = this.names.get(on);
      if (entry === undefined || entry.kind === 'semaphore') return [];
      const places = entry.queue.slice(0, ahead).map((place) => place.session);
      return [...entry.holders.map((grant) => grant.session), ...places].filter((s) => s !== who);
    };
    const start = blockersOf(session, name, this.names.get(name)?.queue.length ?? 0);
    const seen = new Set<number>();
    const frontier = [...start];
    while (frontier.length > 0) {
      const next = frontier.pop() as number;
      if (next === session) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      for (const [on, entry] of this.names) {
        const position = entry.queue.findIndex((place) => place.session === next);
        if (position >= 0) frontier.push(...blockersOf(next, on, position));
      }
    }
    return false;
  }
}

function remove<T>(items: T[], which: (item: T) => boolean): void {
  for (let k = items.length - 1; k >= 0; k--) {
    if (which(items[k] as T)) items.splice(k, 1);
  }
}
