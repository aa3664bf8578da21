import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CellResult } from '../../src/tools/bench/analyze.ts';
import { parseBenchArgs } from '../../src/tools/bench/options.ts';
import { parsePauses, pauseReport } from '../../src/tools/bench/pauses.ts';
import type { PairRecord } from '../../src/tools/bench/records.ts';
import { formatPauses } from '../../src/tools/bench/report.ts';

/**
 * `npm run bench -- --stall-ms N`: the pause lines the nodes log, read back and matched
 * against the slowest acquires. Real log files in the format `dlm serve` writes.
 */
const dir = mkdtempSync(join(tmpdir(), 'dlm-bench-pauses-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_800_000_000_000;

function gcLine(startedAtMs: number, durationMs: number): string {
  return JSON.stringify({
    level: 40,
    kind: 'minor',
    durationMs,
    startedAtMs,
    msg: 'long GC pause',
  });
}
function stallLine(startedAtMs: number, durationMs: number): string {
  return JSON.stringify({ level: 40, durationMs, startedAtMs, msg: 'event loop stalled' });
}

function writeLog(name: string, lines: readonly string[]): string {
  const path = join(dir, `${name}.log`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** A pair whose acquire was sent at `sentMs` and granted `ms` later. */
function pair(sentMs: number, ms: number, clientIndex = 0): PairRecord {
  const grantedMs = sentMs + ms;
  return {
    clientIndex,
    lock: `l${clientIndex}`,
    token: '1',
    acquireSentMs: sentMs,
    grantedMs,
    releaseSentMs: grantedMs,
    releasedMs: grantedMs + 1,
  };
}

describe('parsePauses', () => {
  it('reads GC pauses and stalls, skipping other lines and a line cut short', () => {
    const log = [
      JSON.stringify({ level: 30, msg: 'raft state changed' }),
      gcLine(T0 + 5, 3),
      '{"level":40,"durationMs":4,"startedAtMs":',
      stallLine(T0 + 9, 7),
      JSON.stringify({ level: 40, msg: 'event loop stalled', durationMs: 'long' }),
    ].join('\n');
    expect(parsePauses('n1', log)).toEqual([
      { node: 'n1', kind: 'gc', startMs: T0 + 5, durationMs: 3 },
      { node: 'n1', kind: 'stall', startMs: T0 + 9, durationMs: 7 },
    ]);
  });
});

describe('pauseReport', () => {
  // 100 fast acquires (1 ms) and the slowest 1%: one of 50 ms at T0 + 1000.
  const fast = Array.from({ length: 99 }, (_, i) => pair(T0 + 2000 + i * 10, 1, i));
  const window = { startMs: T0, endMs: T0 + 5000 };

  function report(leaderLog: string[], followerLog: string[], slowAt = T0 + 1000) {
    const members = [
      { name: 'n1', clientAddress: 'x', pid: null, logPath: writeLog('n1', leaderLog) },
      { name: 'n2', clientAddress: 'y', pid: null, logPath: writeLog('n2', followerLog) },
    ];
    return pauseReport(members, 'n1', [...fast, pair(slowAt, 50, 99)], window, 2);
  }

  it('puts a slow acquire down to a leader GC before a stall or a follower pause', () => {
    const result = report(
      [gcLine(T0 + 1010, 20), stallLine(T0 + 1010, 21)],
      [gcLine(T0 + 1020, 5)],
    );
    expect(result?.slowAcquires).toBe(1);
    expect(result?.slowAcquireMsMin).toBe(50);
    expect(result?.slowDuring).toEqual({
      leaderGc: 1,
      leaderStall: 0,
      followerGc: 0,
      followerStall: 0,
      none: 0,
    });
  });

  it('to a follower stall when that is all it overlapped, and to none when nothing did', () => {
    const follower = report([gcLine(T0 + 1100, 5)], [stallLine(T0 + 1040, 30)]);
    expect(follower?.slowDuring.followerStall).toBe(1);
    expect(follower?.slowDuring.leaderGc).toBe(0);
    // Pauses that end before the acquire was sent, or begin after its grant, do not count.
    const none = report([gcLine(T0 + 900, 99)], [stallLine(T0 + 1051, 5)]);
    expect(none?.slowDuring.none).toBe(1);
  });

  it('counts each node’s pauses within the cell, leaving out those outside it', () => {
    const result = report(
      [gcLine(T0 - 100, 5), gcLine(T0 + 10, 4), gcLine(T0 + 20, 6), stallLine(T0 + 30, 9)],
      [stallLine(T0 + 6000, 8)],
    );
    const [leader, follower] = result?.nodes ?? [];
    expect(leader).toEqual({
      name: 'n1',
      leader: true,
      gc: { count: 2, totalMs: 10, maxMs: 6 },
      stall: { count: 1, totalMs: 9, maxMs: 9 },
    });
    expect(follower?.leader).toBe(false);
    expect(follower?.stall.count).toBe(0);
  });

  it('prints no Infinity for a cell that completed no pair', () => {
    const members = [{ name: 'n1', clientAddress: 'x', pid: null, logPath: writeLog('n1', []) }];
    const empty = pauseReport(members, 'n1', [], window, 2);
    expect(empty?.slowAcquires).toBe(0);
    expect(empty?.slowAcquireMsMin).toBe(0);
    expect(formatPauses({ pauses: empty } as CellResult)).not.toContain('Infinity');
  });

  it('is null for a cluster whose logs the bench cannot read (one it did not start, etcd)', () => {
    const members = [{ name: 'etcd1', clientAddress: 'x', pid: null }];
    expect(pauseReport(members, 'etcd1', fast, window, 2)).toBeNull();
  });
});

describe('--stall-ms and --node-flags', () => {
  it('take a threshold and flags for the nodes the bench starts', () => {
    const options = parseBenchArgs([
      '--stall-ms',
      '5',
      '--node-flags',
      ' --max-semi-space-size=32  --trace-gc ',
    ]);
    expect(options.stallMs).toBe(5);
    expect(options.nodeFlags).toEqual(['--max-semi-space-size=32', '--trace-gc']);
    expect(parseBenchArgs([]).stallMs).toBeNull();
  });

  it.each([
    [['--stall-ms', '0'], '--stall-ms must be a number in 1..1000'],
    [['--stall-ms', '2.5'], '--stall-ms must be an integer'],
    [['--node-flags', 'script.js'], '--node-flags takes flags that each begin with --'],
    [['--node-flags', '  '], '--node-flags takes flags'],
    [['--stall-ms', '5', '--endpoints', '127.0.0.1:1'], 'drop --endpoints'],
    [['--node-flags', '--trace-gc', '--endpoints', '127.0.0.1:1'], 'drop --endpoints'],
    [['--stall-ms', '5', '--scale', 'locks'], '--stall-ms reports on the pair cells'],
    [['--runtime', 'snapshotChunkBytes'], '--runtime takes key=number pairs'],
    [['--runtime', 'snapshotChunkBytes=64k'], '--runtime takes key=number pairs'],
    [['--runtime', 'a=1,a=2'], '--runtime: a is given twice'],
    [['--runtime', 'a=1', '--endpoints', '127.0.0.1:1'], 'drop --endpoints'],
    [['--runtime', 'a=1', '--scale', 'locks'], 'the scale cells set theirs'],
    [['--runtime', 'stallReportMsMin=3', '--stall-ms', '5'], 'drop it from --runtime'],
  ])('refuses %j, naming what is wrong', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});

describe('--runtime', () => {
  it("takes the started cluster's runtime settings as key=number pairs", () => {
    expect(
      parseBenchArgs(['--runtime', 'snapshotChunkBytes=65536, snapshotEntriesThreshold=20000'])
        .runtime,
    ).toEqual({ snapshotChunkBytes: 65_536, snapshotEntriesThreshold: 20_000 });
    expect(parseBenchArgs([]).runtime).toEqual({});
  });
});
