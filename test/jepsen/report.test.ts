import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Violation } from '../../src/tools/jepsen/checker.ts';
import type { NemesisEvent, Op } from '../../src/tools/jepsen/history.ts';
import type { LinearizabilityVerdict } from '../../src/tools/jepsen/linearizable.ts';
import type { LogCheckStats, RegisterCheckStats } from '../../src/tools/jepsen/log-checker.ts';
import { renderReport } from '../../src/tools/jepsen/report.ts';
import { runIdOf } from '../../src/tools/jepsen/results.ts';
import { type JepsenResult, runJepsen } from '../../src/tools/jepsen/run.ts';
import {
  type CheckerVerdict,
  checkerVerdicts,
  countOps,
  type RunSummary,
  summarize,
} from '../../src/tools/jepsen/summary.ts';

/**
 * The report (report.ts) drawn from a small hand-written history, and a short real run
 * that writes its results directory (results.ts, called by run.ts).
 */

/** The workload starts at 1,000 ms on the history's clock, so the report shifts every time. */
const START_MS = 1_000;

function op(fields: Omit<Op, 'id'>, id: number): Op {
  return { ...fields, id };
}

/** c0 holds L (token 11) and releases; c1 holds it (token 12) until its session ends. */
const OPS: Op[] = (
  [
    {
      client: 'c0',
      kind: 'acquire',
      lock: 'L',
      invokeMs: 1_100,
      completeMs: 1_110,
      outcome: 'ok',
      token: '11',
      session: 's0',
    },
    {
      client: 'c0',
      kind: 'write',
      lock: 'L',
      invokeMs: 1_120,
      completeMs: 1_125,
      outcome: 'ok',
      token: '11',
      register: 'fenced',
    },
    {
      client: 'c0',
      kind: 'release',
      lock: 'L',
      invokeMs: 1_600,
      completeMs: 1_605,
      outcome: 'ok',
      token: '11',
    },
    {
      client: 'c1',
      kind: 'acquire',
      lock: 'L',
      invokeMs: 1_590,
      completeMs: 1_700,
      outcome: 'ok',
      token: '12',
      session: 's1',
      lostAtMs: 2_600,
    },
    {
      client: 'c1',
      kind: 'write',
      lock: 'L',
      invokeMs: 1_800,
      completeMs: null,
      outcome: 'info',
      token: '12',
      register: 'fenced',
    },
    {
      client: 'c0',
      kind: 'acquire',
      lock: 'L',
      invokeMs: 1_700,
      completeMs: 2_700,
      outcome: 'fail',
    },
  ] satisfies Omit<Op, 'id'>[]
).map(op);

const EVENTS: NemesisEvent[] = [
  { atMs: 1_400, kind: 'kill', target: 'n2' },
  { atMs: 1_900, kind: 'restart', target: 'n2' },
  { atMs: 2_100, kind: 'partition', target: 'network', detail: 'majority/minority: n1 | n2 n3' },
  { atMs: 2_500, kind: 'heal', target: 'network', detail: 'majority/minority: n1 | n2 n3' },
];

const CHECKERS: CheckerVerdict[] = [
  { name: 'history: mutual exclusion', valid: true, details: { stats: { grants: 2 } } },
  {
    name: 'a checker that found something',
    valid: false,
    details: {
      anomalies: [
        { message: 'first anomaly: token 12 <overlaps> token 11', ops: [3] },
        { message: 'second anomaly', ops: [0] },
        ...Array.from({ length: 8 }, (_, i) => ({ message: `anomaly number ${i + 3}` })),
      ],
    },
  },
  { name: 'a checker out of time', valid: 'unknown', details: { note: 'search budget spent' } },
];

function summaryOf(checkers: readonly CheckerVerdict[]): RunSummary {
  return {
    runId: '20261203T110000Z-seed7',
    startedAt: '2026-12-03T11:00:00.000Z',
    wallMs: 9_000,
    options: {
      seconds: 2,
      seed: 7,
      clients: 2,
      locks: 1,
      nodes: 3,
      nemeses: ['kill', 'partition'],
    },
    workloadStartMs: START_MS,
    workloadEndMs: 3_000,
    ops: { total: OPS.length, byKind: countOps(OPS) },
    grants: { acknowledged: 2, inLog: 2, inLogUnacknowledged: 0 },
    nemesis: {
      total: EVENTS.length,
      byKind: { kill: 1, restart: 1, partition: 1, heal: 1 },
      skipped: [],
    },
    valid: false,
    checkers,
  };
}

const html = renderReport(summaryOf(CHECKERS), { ops: OPS, nemesisEvents: EVENTS }, ['n1.log']);

/** The SVG groups whose title starts with `title`. */
function groupsTitled(title: string): string[] {
  return html.split('<g>').filter((group) => group.startsWith(`<title>${title}`));
}

describe('jepsen report: the page for a small history', () => {
  it('draws every hold with its client, lock, token, times and how it ended', () => {
    const c0 = groupsTitled('c0 L token 11: 0.11 s–0.6 s (490 ms), released');
    const c1 = groupsTitled('c1 L token 12: 0.7 s–1.6 s (900 ms), session ended');
    // Once in the overview, once in the one detail strip a 2 s run gets.
    expect(c0).toHaveLength(2);
    expect(c1).toHaveLength(2);
    // Wide enough for the token to be written on the bar itself.
    for (const group of [...c0, ...c1]) expect(group).toMatch(/<text [^>]*>1[12]<\/text>/);
    // The failed acquire is no hold.
    expect(html).not.toContain('token undefined');
  });

  it('outlines in red the holds an invalid checker named', () => {
    const [flagged] = groupsTitled('c1 L token 12');
    expect(flagged).toContain('stroke="#c62828"');
    expect(flagged).toContain('named by a failed checker');
  });

  it('shades each nemesis interval and labels it with its kind', () => {
    const kill = groupsTitled('kill n2: 0.4 s–0.9 s (500 ms)');
    const partition = groupsTitled('partition network: 1.1 s–1.5 s (400 ms)');
    expect(kill.length).toBeGreaterThanOrEqual(2);
    expect(partition.length).toBeGreaterThanOrEqual(2);
    expect(partition[0]).toContain('majority/minority: n1 | n2 n3');
    expect(partition[0]).toContain('>partition network</text>');
    // A shaded band behind the lanes for each fault, in each timeline and the latency plot.
    expect(html.match(/opacity="0.13"/g)?.length).toBeGreaterThanOrEqual(2 * 3);
  });

  it('gives every checker its verdict, and the first few anomalies of an invalid one', () => {
    for (const [name, verdict] of [
      ['history: mutual exclusion', 'VALID'],
      ['a checker that found something', 'INVALID'],
      ['a checker out of time', 'UNKNOWN'],
    ]) {
      expect(html).toMatch(new RegExp(`>${verdict}</span> ${name}</h3>`));
    }
    // Each linked to the strip where its first op began (op 3 at 0.59 s, the only strip).
    expect(html).toContain(
      'first anomaly: token 12 &lt;overlaps&gt; token 11 <a href="#strip-0">at 0.59 s</a>',
    );
    expect(html).toContain('anomaly number 5');
    expect(html).not.toContain('anomaly number 6');
    expect(html).toContain('and 5 more');
    expect(html).toContain('search budget spent');
  });

  it('plots latency by op kind and outcome, and says how many ops it merged', () => {
    expect(html).toContain('6 ops drawn as 6 marks');
    // ok: dots (zero-length segments); fail: crosses; info: ticks in the no-answer band.
    expect(html).toMatch(/<path d="(M\d+ \d+h0)+" stroke="#3b7dd8"/);
    expect(html).toMatch(/<path d="M\d+ \d+l6 6m0 -6l-6 6" stroke="#3b7dd8"/);
    expect(html).toMatch(/<path d="M\d+ 4v14" stroke="#c98a00"/);
  });

  it('needs no server and no network: nothing is loaded from anywhere', () => {
    expect(html).not.toMatch(/https?:/);
    expect(html).not.toMatch(/<script|<link|<img|src=|@import|url\(/);
    expect(html).toContain('<a href="logs/n1.log">');
  });

  it('merges holds less than a pixel apart in the overview of a long run, and says so', () => {
    // 3,000 holds of 50 ms back to back over 600 s: 0.5 s a pixel, so the overview cannot
    // show them apart; the strips can.
    const ops: Op[] = [];
    for (let i = 0; i < 3_000; i++) {
      const at = START_MS + i * 200;
      ops.push(
        op(
          {
            client: 'c0',
            kind: 'acquire',
            lock: 'L',
            invokeMs: at,
            completeMs: at,
            outcome: 'ok',
            token: String(i + 1),
          },
          ops.length,
        ),
      );
      ops.push(
        op(
          {
            client: 'c0',
            kind: 'release',
            lock: 'L',
            invokeMs: at + 50,
            completeMs: at + 51,
            outcome: 'ok',
            token: String(i + 1),
          },
          ops.length,
        ),
      );
    }
    const summary = { ...summaryOf([]), workloadEndMs: START_MS + 600_000 };
    const long = renderReport(summary, { ops, nemesisEvents: [] });
    const overview = long.slice(0, long.indexOf('Latency over time'));
    expect(overview).toContain('c0 L: 3000 holds merged, tokens 1–3000');
    // Strips short enough for a 50 ms hold to carry a 4-digit token, each linked from the overview.
    expect(long).toContain('Holds in detail: 300 strips of 2 s');
    expect(overview).toContain('<a href="#strip-299">');
    expect(long).toContain('id="strip-299"');
    expect(long).toContain('6000 ops drawn as');
    // Every hold is drawn in the strips, labelled where it fits.
    expect(long).toContain('>3000</text>');
  });
});

describe('jepsen summary: every checker gets a verdict', () => {
  const stats = (mode: RegisterCheckStats['mode'], staleAccepted = 0): RegisterCheckStats => ({
    mode,
    accepted: 3,
    refused: 0,
    staleAccepted,
    infoLanded: 0,
    infoLost: 0,
  });
  const LOG_STATS = {
    grants: 2,
    grantsUnacknowledged: 0,
    committedIndex: 9,
    startIndex: 1,
    agreement: { smallestCommitIndex: 9, comparisons: 18 },
    logs: ['n1 2..9 (commit 9)'],
    answers: { acquire: { ok: 2, reproduced: 2, beforeStart: 0 } },
    info: { acquire: { tookEffect: 1, noEffect: 0, notInLog: 0, unresolvable: 0 } },
  } as unknown as LogCheckStats;
  const LINEARIZABLE: LinearizabilityVerdict = {
    verdict: 'ok',
    locks: [{ lock: 'l', verdict: 'ok', ops: 4, statesExplored: 9, searchMs: 1 }],
    checkMs: 2,
    ops: 4,
    violations: [],
    unknownLocks: [],
    locksLeftOut: [],
  };
  /** A run's result with the given violations and control register findings. */
  function result(fields: {
    violations?: Violation[];
    stale?: Violation[];
    events?: NemesisEvent[];
    linearizability?: LinearizabilityVerdict;
    log?: LogCheckStats;
  }): JepsenResult {
    return {
      ops: OPS,
      violations: fields.violations ?? [],
      nemesisEvents: fields.events ?? EVENTS,
      log: fields.log ?? LOG_STATS,
      linearizability: fields.linearizability ?? LINEARIZABLE,
      replayed: { grants: [] } as unknown as JepsenResult['replayed'],
      fenced: { violations: [], stats: stats('fenced'), decisions: [] },
      control: {
        violations: fields.stale ?? [],
        stats: stats('ignore-tokens', fields.stale?.length ?? 0),
        decisions: [],
      },
      startMs: START_MS,
      endMs: 3_000,
      clusterDir: '/nonexistent',
      beyondBound: [],
      skipped: [],
      faultVerdicts: [],
    };
  }
  const options = { seconds: 2, seed: 7, clients: 2, locks: 1, nodes: 3 };
  const stale: Violation = { check: 'register-stale-write', message: 'stale write', ops: [4] };
  const pause: NemesisEvent = { atMs: 1_500, kind: 'client-pause', target: 'c1' };
  const byName = (verdicts: readonly CheckerVerdict[]) =>
    new Map(verdicts.map((verdict) => [verdict.name, verdict.valid]));

  it('says how many ok answers the log replay left unchecked before its start', () => {
    const raftLog = (log: LogCheckStats) =>
      checkerVerdicts(options, result({ log })).find((v) => v.name.startsWith('raft log'));
    expect(raftLog(LOG_STATS)?.details.note).toBeUndefined();
    const fromSnapshot = {
      ...LOG_STATS,
      startIndex: 5,
      answers: { acquire: { ok: 5, reproduced: 2, beforeStart: 3 } },
    } as unknown as LogCheckStats;
    const verdict = raftLog(fromSnapshot);
    expect(verdict?.details.note).toContain('3 ok answers unchecked: given before index 5');
    expect(verdict?.details.stats?.["acquire ok unchecked (before the replay's start)"]).toBe(3);
  });

  it('groups violations by checker, and names a check it does not know after itself', () => {
    const violations = [
      { check: 'fencing', message: 'tokens fell', ops: [0, 3] },
      { check: 'linearizability', message: 'no order fits', ops: [] },
      { check: 'disk-full' as Violation['check'], message: 'acked after ENOSPC', ops: [] },
    ] satisfies Violation[];
    const verdicts = byName(checkerVerdicts(options, result({ violations, stale: [stale] })));
    expect(verdicts).toEqual(
      new Map<string, boolean | 'unknown'>([
        ['history: mutual exclusion', true],
        ['history: tokens rise in real time', false],
        ['raft log: what clients were told against the committed log', true],
        ['history: linearizable (lease-aware model)', false],
        ['fenced register: accepted writes follow the log', true],
        ['disk-full', false],
        ['negative control: a register that ignores tokens is caught', true],
      ]),
    );
  });

  it('calls the negative control unknown with no client pause, invalid when a pause went uncaught, and leaves it out without the client-pause nemesis', () => {
    const control = (r: JepsenResult) =>
      byName(checkerVerdicts(options, r)).get(
        'negative control: a register that ignores tokens is caught',
      );
    expect(control(result({ events: [] }))).toBe('unknown');
    const killOnly = { ...options, nemeses: ['kill'] as const };
    expect(byName(checkerVerdicts(killOnly, result({ events: [] }))).size).toBe(5);
    expect(control(result({ events: [pause] }))).toBe(false);
    expect(control(result({ events: [pause], stale: [stale] }))).toBe(true);
  });

  it('calls linearizability unknown, naming the lock, when a search ran out of budget', () => {
    const outOfTime = { ...LINEARIZABLE, verdict: 'unknown' as const, unknownLocks: ['l'] };
    const verdict = checkerVerdicts(options, result({ linearizability: outOfTime })).find(
      (each) => each.name === 'history: linearizable (lease-aware model)',
    );
    expect(verdict?.valid).toBe('unknown');
    expect(verdict?.details.note).toContain('l');
    expect(verdict?.details.stats).toMatchObject({ l: 'ok, 4 ops, 9 states, 1 ms' });
  });

  it('is invalid overall if any checker is, else unknown if any is', () => {
    const summaryOf = (r: JepsenResult) =>
      summarize({ runId: 'r', startedAt: new Date(0), wallMs: 1, options, result: r });
    expect(summaryOf(result({ stale: [stale] })).valid).toBe(true);
    expect(summaryOf(result({ events: [] })).valid).toBe('unknown');
    const fencing: Violation = { check: 'fencing', message: 'x', ops: [] };
    expect(summaryOf(result({ violations: [fencing], events: [] })).valid).toBe(false);
  });
});

describe('jepsen results: a run writes its directory', () => {
  const base = mkdtempSync(join(tmpdir(), 'dlm-jepsen-results-'));
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('names a run by its UTC start and seed', () => {
    expect(runIdOf(new Date('2026-12-03T11:00:00.123Z'), 7)).toBe('20261203T110000Z-seed7');
  });

  it('holds history.jsonl, every node log, summary.json and index.html', {
    timeout: 120_000,
  }, async () => {
    const result = await runJepsen({
      seconds: 2,
      seed: 5,
      clients: 2,
      locks: 1,
      nemeses: ['kill'],
      results: base,
    });
    const dir = result.resultsDir as string;
    expect(readdirSync(base)).toEqual([basename(dir)]);
    expect(basename(dir)).toMatch(/^\d{8}T\d{6}Z-seed5$/);
    expect(readdirSync(dir).sort()).toEqual([
      'history.jsonl',
      'index.html',
      'logs',
      'summary.json',
    ]);

    const lines = readFileSync(join(dir, 'history.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(result.ops.length + result.nemesisEvents.length);
    expect(result.ops.length).toBeGreaterThan(0);

    // The nodes' logs outlive the cluster's directory, which a passing run removes.
    for (const node of ['n1', 'n2', 'n3']) {
      expect(statSync(join(dir, 'logs', `${node}.log`)).size).toBeGreaterThan(0);
    }
    expect(existsSync(result.clusterDir)).toBe(result.violations.length > 0);

    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as RunSummary;
    expect(summary.runId).toBe(basename(dir));
    expect(summary.options).toMatchObject({ seconds: 2, seed: 5, nemeses: ['kill'] });
    expect(summary.ops.total).toBe(result.ops.length);
    expect(summary.nemesis.byKind.kill).toBeGreaterThanOrEqual(1);
    expect(summary.wallMs).toBeGreaterThan(2_000);
    expect(summary.checkers.map((c) => c.name)).toContain('history: mutual exclusion');
    expect(summary.checkers.every((c) => [true, false, 'unknown'].includes(c.valid))).toBe(true);

    const page = readFileSync(join(dir, 'index.html'), 'utf8');
    for (const checker of summary.checkers) expect(page).toContain(checker.name);
    expect(page).toContain('<a href="logs/n1.log">');
  });
});
