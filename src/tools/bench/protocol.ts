import type { BenchErrors } from './bench-errors.ts';
import type { DlmClientKind } from './bench-session.ts';
import type { ClientAssignment } from './cells.ts';
import type { PairRecord } from './records.ts';
import type { ScaleStats } from './scale-worker.ts';
import type { SystemName } from './server-cluster.ts';

/** Messages between the bench's coordinator and its worker processes (over IPC). */
export type ToWorker =
  | {
      readonly kind: 'open';
      readonly system: SystemName;
      readonly endpoints: readonly string[];
      readonly clients: readonly ClientAssignment[];
      readonly sessionTtlMs: number;
      readonly dlmClient: DlmClientKind;
    }
  | {
      readonly kind: 'run';
      /** Clients start no new pair after this (epoch ms, see epochNowMs). */
      readonly untilMs: number;
      /** ... or once this worker's clients completed this many pairs together. */
      readonly pairsMax: number;
      /** How long an Acquire may wait in the server's queue. */
      readonly waitMs: number;
    }
  | { readonly kind: 'close' }
  | ScaleToWorker;

/** The scale cells' commands (see scale-worker.ts). */
export type ScaleToWorker =
  | {
      /** Open `count` sessions through one client, at most `concurrency` opens at once. */
      readonly kind: 'scaleOpen';
      readonly endpoints: readonly string[];
      readonly count: number;
      readonly ttlMs: number;
      readonly concurrency: number;
      /** Client names are `<namePrefix><n>`. */
      readonly namePrefix: string;
    }
  | {
      /** Each open session takes `locksPerSession` locks (wait_ms 0), `concurrency` at once. */
      readonly kind: 'scaleFill';
      readonly lockPrefix: string;
      readonly locksPerSession: number;
      readonly concurrency: number;
    }
  | {
      /** Counters so far; `resetLatency` starts a new keepalive latency sample. */
      readonly kind: 'scaleStats';
      readonly resetLatency: boolean;
    }
  | { readonly kind: 'scaleClose'; readonly concurrency: number };

export type FromWorker =
  | { readonly kind: 'opened' }
  | { readonly kind: 'progress'; readonly pairs: number }
  | {
      readonly kind: 'ran';
      readonly records: readonly PairRecord[];
      /** This worker's CPU (user + system) over the run, ms. */
      readonly cpuMs: number;
      /** Share of the run this worker's event loop was busy (0..1): near 1, it was the limit. */
      readonly eventLoopBusy: number;
      readonly errors: BenchErrors;
    }
  | { readonly kind: 'closed' }
  | {
      readonly kind: 'scaleOpened';
      readonly opened: number;
      readonly errors: BenchErrors;
    }
  | {
      readonly kind: 'scaleFilled';
      readonly acquired: number;
      readonly errors: BenchErrors;
    }
  | { readonly kind: 'scaleStats'; readonly stats: ScaleStats }
  | { readonly kind: 'scaleClosed'; readonly errors: BenchErrors }
  | { readonly kind: 'failed'; readonly message: string };
