/**
 * Partition shapes (src/tools/jepsen/grudge.ts), checked as graphs: who can reach whom.
 */
import { describe, expect, it } from 'vitest';
import {
  between,
  bridge,
  bridgeNode,
  cutsText,
  isolate,
  majoritiesRing,
  oneWay,
  parseCut,
  partition,
  reachable,
  union,
} from '../../src/tools/jepsen/grudge.ts';

const five = ['n1', 'n2', 'n3', 'n4', 'n5'];
const three = ['n1', 'n2', 'n3'];

function sees(grudge: ReadonlySet<string>, nodes: readonly string[]): Map<string, string[]> {
  return new Map(nodes.map((id) => [id, reachable(grudge, id, nodes)]));
}

describe('partition shapes', () => {
  it('isolate cuts one node from every other, both ways, and nothing else', () => {
    const grudge = isolate('n2', three);
    expect(cutsText(grudge)).toBe('n1>n2 n2>n1 n2>n3 n3>n2');
    expect(sees(grudge, three).get('n1')).toEqual(['n1', 'n3']);
  });

  it('partition places every node exactly once', () => {
    const grudge = partition(
      [
        ['n1', 'n2'],
        ['n3', 'n4', 'n5'],
      ],
      five,
    );
    expect(grudge.size).toBe(2 * 2 * 3);
    expect(sees(grudge, five).get('n4')).toEqual(['n3', 'n4', 'n5']);
    expect(() => partition([['n1'], ['n2']], three)).toThrow('missing: n3');
    expect(() =>
      partition(
        [
          ['n1', 'n2'],
          ['n2', 'n3'],
        ],
        three,
      ),
    ).toThrow('"n2" is in two groups');
  });

  it.each([4, 5, 6, 7, 8, 9])(
    'majorities-ring on %i nodes: each sees a majority, no two the same',
    (n) => {
      const nodes = Array.from({ length: n }, (_, i) => `n${i + 1}`);
      const views = sees(majoritiesRing(nodes), nodes);
      const majority = Math.floor(n / 2) + 1;
      const distinct = new Set<string>();
      for (const [id, view] of views) {
        expect(view.length, id).toBeGreaterThanOrEqual(majority);
        expect(view.length, id).toBeLessThan(n);
        distinct.add(view.join(','));
        // Symmetric: a cut is always both ways here.
        for (const other of view) expect(views.get(other)).toContain(id);
      }
      expect(distinct.size).toBe(n);
    },
  );

  it('majorities-ring refuses 3 nodes', () => {
    expect(() => majoritiesRing(three)).toThrow('at least 4 nodes');
  });

  it('bridge: the halves cannot see each other, the bridge node sees everyone', () => {
    const grudge = bridge(five);
    expect(bridgeNode(five)).toBe('n3');
    const views = sees(grudge, five);
    expect(views.get('n3')).toEqual(five);
    expect(views.get('n1')).toEqual(['n1', 'n2', 'n3']);
    expect(views.get('n5')).toEqual(['n3', 'n4', 'n5']);
    expect(cutsText(bridge(three))).toBe('n1>n3 n3>n1');
  });

  it('one-way, between and union compose as sets of directed cuts', () => {
    expect(cutsText(oneWay('n1', 'n2'))).toBe('n1>n2');
    expect(cutsText(union(oneWay('n1', 'n2'), between('client', 'n3')))).toBe(
      'client>n3 n1>n2 n3>client',
    );
    expect(cutsText(new Set())).toBe('none');
    expect(parseCut('n1>n2')).toEqual(['n1', 'n2']);
    expect(() => parseCut('n1')).toThrow('not a cut');
  });
});
