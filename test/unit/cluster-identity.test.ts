import { describe, expect, it } from 'vitest';
import {
  bootstrapIdentity,
  checkIdentityAtStart,
  IdentityMismatchError,
} from '../../src/node/cluster-identity.ts';
import { nodeId } from '../../src/util/ids.ts';

/** The identity a database is created with, and the check at every start. */
const n1 = nodeId('n1');
const n2 = nodeId('n2');
const DIR = '/var/lib/dlm/n2';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('bootstrapIdentity', () => {
  it("takes the config's clusterId, founder or joiner", () => {
    for (const founders of [['n1', 'n2'], null]) {
      expect(bootstrapIdentity({ nodeId: n2, clusterId: 'prod', founders })).toEqual({
        clusterId: 'prod',
        nodeId: n2,
      });
    }
  });

  it('without one, only the founder whose id sorts first generates an id; the others learn it', () => {
    const founders = ['n3', 'n1', 'n2'];
    const generator = bootstrapIdentity({ nodeId: n1, clusterId: null, founders });
    expect(generator.clusterId).toMatch(UUID);
    expect(bootstrapIdentity({ nodeId: n2, clusterId: null, founders }).clusterId).toBe('');
    // Two clusters founded from the same config still get different ids.
    expect(bootstrapIdentity({ nodeId: n1, clusterId: null, founders }).clusterId).not.toBe(
      generator.clusterId,
    );
  });

  it('a joiner without a configured id learns it', () => {
    expect(bootstrapIdentity({ nodeId: n1, clusterId: null, founders: null })).toEqual({
      clusterId: '',
      nodeId: n1,
    });
  });
});

describe('checkIdentityAtStart', () => {
  it('keeps a matching identity', () => {
    const stored = { clusterId: 'c-1', nodeId: n2 };
    for (const clusterId of ['c-1', null]) {
      expect(checkIdentityAtStart(stored, { nodeId: n2, clusterId }, DIR)).toEqual({
        identity: stored,
        save: false,
        note: null,
      });
    }
  });

  it("refuses another member's database, naming both node ids and the directory", () => {
    const start = () =>
      checkIdentityAtStart({ clusterId: 'c-1', nodeId: n1 }, { nodeId: n2, clusterId: null }, DIR);
    expect(start).toThrow(IdentityMismatchError);
    expect(start).toThrow(
      `the database in ${DIR} belongs to node n1, not to n2: it is another member's data directory`,
    );
  });

  it("refuses another cluster's database, naming both cluster ids and the directory", () => {
    const start = () =>
      checkIdentityAtStart({ clusterId: 'c-a', nodeId: n2 }, { nodeId: n2, clusterId: 'c-b' }, DIR);
    expect(start).toThrow(
      `the database in ${DIR} belongs to cluster c-a, but the config says clusterId c-b`,
    );
  });

  it("a database that did not know its cluster yet adopts the config's", () => {
    const started = checkIdentityAtStart(
      { clusterId: '', nodeId: n2 },
      { nodeId: n2, clusterId: 'c-b' },
      DIR,
    );
    expect(started.identity).toEqual({ clusterId: 'c-b', nodeId: n2 });
    expect(started.save).toBe(true);
    expect(started.note).toContain('adopting c-b from the config');
  });

  it('a database from before identities adopts the node id (and the configured cluster id), and says so', () => {
    const learning = checkIdentityAtStart(null, { nodeId: n2, clusterId: null }, DIR);
    expect(learning.identity).toEqual({ clusterId: '', nodeId: n2 });
    expect(learning.save).toBe(true);
    expect(learning.note).toContain(`the database in ${DIR} has no stored identity`);
    const configured = checkIdentityAtStart(null, { nodeId: n2, clusterId: 'c-b' }, DIR);
    expect(configured.identity).toEqual({ clusterId: 'c-b', nodeId: n2 });
  });
});
