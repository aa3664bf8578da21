import { describe, expect, it } from 'vitest';
import {
  answersAround,
  DiskFullNemesis,
  NODE_DISK_BYTES,
} from '../../src/tools/jepsen/disk-full.ts';
import type { NemesisEvent } from '../../src/tools/jepsen/history.ts';
import { Members } from '../../src/tools/jepsen/members.ts';
import { NodeDisks } from '../../src/tools/jepsen/node-disks.ts';
import { runJepsen } from '../../src/tools/jepsen/run.ts';
import { waitUntilServing } from '../../src/tools/jepsen/waits.ts';
import { ProcessCluster } from '../support/process-cluster.ts';
import {
  countEvents,
  expectCleanRun,
  faultVerdict,
  grantsDuring,
  statOf,
} from './nemesis-support.ts';

/**
 * The disk-full nemesis against real processes (issue 13, point 5): a node's tmpfs is
 * filled until LevelDB fails a write with ENOSPC. The node must stop acknowledging
 * nothing after that failed write (its own log says what it answered), stop again if
 * restarted on the still-full disk, and rejoin once the ballast is gone; the others
 * serve meanwhile, and no acknowledged op is lost. A tmpfs needs root: without it the
 * run must say the nemesis was skipped.
 */
const isRoot = process.platform === 'linux' && process.getuid?.() === 0;

describe('jepsen disk-full nemesis', () => {
  it.skipIf(!isRoot)(
    'a node on a full disk stops without acknowledging what it could not persist, and rejoins (root: tmpfs)',
    { timeout: 120_000 },
    async () => {
      const result = await runJepsen({
        seconds: 14,
        seed: 20261203,
        clients: 3,
        locks: 2,
        nemeses: ['disk-full'],
        opening: ['disk-full'],
      });
      expectCleanRun(result);
      const verdict = faultVerdict(result, 'disk full');
      console.log(`disk-full: ${JSON.stringify(verdict.details)}`);
      expect(verdict.valid).toBe(true);
      const stopped = statOf(verdict, 'stoppedOnFailedWrite');
      expect(stopped).toBeGreaterThanOrEqual(1);
      expect(statOf(verdict, 'acksAfterFailedWrite')).toBe(0);
      expect(statOf(verdict, 'acksLongAfterFill')).toBe(0);
      expect(statOf(verdict, 'stoppedAgainOnFullDisk')).toBe(stopped);
      expect(statOf(verdict, 'rejoined')).toBe(stopped);
      expect(verdict.details.note).toContain('No space left on device');
      expect(countEvents(result, 'disk-free')).toBe(countEvents(result, 'disk-full'));
      expect(grantsDuring(result, 'disk-full')).toBeGreaterThan(0);
    },
  );

  it.skipIf(isRoot)('without root the run says disk-full was skipped, never passed', async () => {
    const result = await runJepsen({
      seconds: 1,
      seed: 1,
      clients: 1,
      locks: 1,
      nemeses: ['disk-full'],
    });
    expect(result.skipped.map((skip) => skip.nemesis)).toEqual(['disk-full']);
    expect(result.faultVerdicts).toEqual([]);
    expect(countEvents(result, 'disk-full')).toBe(0);
  });

  it.skipIf(!isRoot)(
    'a node with no process running is not filled, and the verdict says so rather than "exited without saying why" (root: tmpfs)',
    { timeout: 60_000 },
    async () => {
      const cluster = await ProcessCluster.create(1);
      const mounted = NodeDisks.mount(new Map([['n1', cluster.dataDirOf('n1')]]), NODE_DISK_BYTES);
      if (mounted.disks === null) throw new Error(mounted.skipped);
      // Down, as a fault can leave a node (or as a process the harness lost looks).
      cluster.start('n1');
      expect(await waitUntilServing(cluster, 'n1', 20_000)).toBe(true);
      await cluster.kill('n1');
      const events: NemesisEvent[] = [];
      const nemesis = new DiskFullNemesis(cluster, mounted.disks, new Members(['n1']), events);
      try {
        await nemesis.once('n1');
      } finally {
        await cluster.stopAll();
        mounted.disks.release();
        cluster.remove();
      }
      expect(nemesis.violations().map((v) => v.message)).toEqual([
        'n1: was not running when its disk was to be filled (a fault left it down, or the harness lost its process): nothing filled, nothing to judge',
      ]);
      expect(events).toEqual([]);
      expect(nemesis.verdict().details.stats?.notRunningAtFill).toBe(1);
    },
  );

  it('reads what a node answered around its failed write, or long after its disk filled, from its log', () => {
    const call = (method: string, code: number, time = 1_000): string =>
      JSON.stringify({ level: 20, time, msg: 'call', method, code });
    const fatal = JSON.stringify({
      level: 60,
      msg: 'node stopped on a failure; exiting',
      err: { message: 'IO error: 000003.log: No space left on device' },
    });
    const log = [
      call('Acquire', 0),
      call('Status', 0),
      fatal,
      call('KeepAlive', 13),
      call('Describe', 0),
      call('Release', 0),
      'dlm serve: node n1 stopped: IO error',
      '',
    ].join('\n');
    expect(answersAround(log, 5_000)).toEqual({
      failure: 'IO error: 000003.log: No space left on device',
      acksBeforeFailure: 1,
      acksAfterFailure: 1,
      acksLongAfterFill: 0,
    });
    // An answer logged after the fatal line but given before it (pino buffers 'call'
    // lines, writes fatal ones at once) is before; one at or after its time is after.
    const timedFatal = JSON.stringify({ ...JSON.parse(fatal), time: 2_000 });
    const buffered = [timedFatal, call('KeepAlive', 0, 1_998), call('Release', 0, 2_000)].join(
      '\n',
    );
    expect(answersAround(buffered, 5_000)).toEqual({
      failure: 'IO error: 000003.log: No space left on device',
      acksBeforeFailure: 1,
      acksAfterFailure: 1,
      acksLongAfterFill: 0,
    });
    // No failure logged, but acknowledgements long after the disk filled.
    const quiet = [call('Acquire', 0, 1_000), call('KeepAlive', 0, 6_000)].join('\n');
    expect(answersAround(quiet, 5_000)).toEqual({
      failure: null,
      acksBeforeFailure: 1,
      acksAfterFailure: 0,
      acksLongAfterFill: 1,
    });
  });
});
