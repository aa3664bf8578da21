/**
 * Review (snapshot-spacing, a6bde47; all three failed there, and pass since turns stay on
 * the threshold's grid and are skipped while the log is smaller than the snapshot): "Turns stay offset by the member's place, so the
 * members still take them apart." The offset is worked out from each node's own spacing
 * (threshold × turns × place / members), and the spacings change at different indexes on
 * different nodes, so while a state grows (and after any restart, which resets a node's
 * spacing to the threshold) two members' turn grids meet: they snapshot the same index,
 * as all three did before issue 12's turns. A spacing change also moves a node's own grid,
 * so its next turn can come well under a threshold after the last one.
 * snapshotEntriesMax = 10 × threshold, the ratio of the defaults (100,000 / 10,000).
 */
import { describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { ids } from '../raft/harness.ts';
import { drive, openSessions } from './ssp-support.ts';

const [n1, n2, n3] = ids('n1', 'n2', 'n3');
const THRESHOLD = 30;
const three: ClusterConfig = { voters: [n1, n2, n3], learners: [] };

describe('ssp: members take spread turns apart', () => {
  it('no two members snapshot at one index while the state grows', async () => {
    const commands = openSessions(0, 1_500);
    const options = { threshold: THRESHOLD, snapshotEntriesMax: 10 * THRESHOLD };
    const all: number[][] = [];
    for (const id of [n1, n2, n3]) {
      all.push((await drive(id, three, commands, options)).taken.map((t) => t.index));
    }

    const sharedAny = [0, 1, 2].flatMap((a) =>
      (all[a] ?? []).filter((index) => [0, 1, 2].some((b) => b > a && all[b]?.includes(index))),
    );
    expect({ all, sharedAny }).toMatchObject({ sharedAny: [] });
  });

  it('after a restart of the cluster the members do not all snapshot at once', async () => {
    // Long enough after the restart for every member to reach a turn it takes.
    const commands = openSessions(0, 2_000);
    const options = {
      threshold: THRESHOLD,
      snapshotEntriesMax: 10 * THRESHOLD,
      restartAfter: 1_450,
    };
    const after: number[][] = [];
    for (const id of [n1, n2, n3]) {
      const { taken } = await drive(id, three, commands, options);
      after.push(taken.map((t) => t.index).filter((index) => index > 1_450));
    }
    const first = after.map((indexes) => indexes[0]);
    expect(first.every((index) => index !== undefined)).toBe(true);
    expect({ after, distinctFirst: new Set(first).size }).toMatchObject({ distinctFirst: 3 });
  });

  it("a node's snapshots are never less than a threshold apart", async () => {
    const commands = openSessions(0, 1_500);
    const options = { threshold: THRESHOLD, snapshotEntriesMax: 10 * THRESHOLD };
    for (const id of [n1, n2, n3]) {
      const indexes = (await drive(id, three, commands, options)).taken.map((t) => t.index);
      const gaps = indexes.slice(1).map((index, i) => index - (indexes[i] as number));
      expect({ id, indexes, short: gaps.filter((gap) => gap < THRESHOLD) }).toMatchObject({
        short: [],
      });
    }
  });
});
