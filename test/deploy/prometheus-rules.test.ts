import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiContext, callFailureOf } from '../../src/api/context.ts';
import { DlmError } from '../../src/node/errors.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { PeerTraffic } from '../../src/node/peer-traffic.ts';
import { RuntimeWatch } from '../../src/node/runtime-watch.ts';
import { TestCluster } from '../node/cluster-harness.ts';

/**
 * deploy/prometheus/dlm-rules.yml: valid for Prometheus (`promtool check rules`), firing
 * on the series of a sick cluster and quiet on a healthy one (`promtool test rules`
 * with dlm-rules.test.yml), and naming only metrics a node really exports.
 */
const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const RULES = join(DIR, 'dlm-rules.yml');
const RULE_TESTS = join(DIR, 'dlm-rules.test.yml');

const promtool = spawnSync('promtool', ['--version']).status === 0;
const MISSING =
  'SKIPPED: promtool is not installed (Debian: apt-get install prometheus; .ci/run does)';
if (!promtool) console.warn(`test/deploy/prometheus-rules.test.ts: ${MISSING}`);

function runPromtool(args: readonly string[], cwd: string): { code: number; output: string } {
  const run = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: run.status ?? -1, output: `${run.stdout}${run.stderr}` };
}

let scratch: string | null = null;
afterEach(() => {
  if (scratch !== null) rmSync(scratch, { recursive: true, force: true });
  scratch = null;
});

/** The rules and their unit tests copied beside each other, the rules changed by `edit`. */
function rulesWith(edit: (rules: string) => string): string {
  scratch = mkdtempSync(join(tmpdir(), 'dlm-rules-'));
  const rules = readFileSync(RULES, 'utf8');
  const changed = edit(rules);
  expect(changed).not.toBe(rules);
  writeFileSync(join(scratch, 'dlm-rules.yml'), changed);
  copyFileSync(RULE_TESTS, join(scratch, 'dlm-rules.test.yml'));
  return scratch;
}

describe.skipIf(!promtool)(`alert rules under promtool${promtool ? '' : ` (${MISSING})`}`, () => {
  it('promtool check rules accepts the rules file', () => {
    const output = execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(output).toContain('SUCCESS: 8 rules found');
  });

  it('promtool test rules: no leader, a lagging follower and a flapping leader fire; a leader change does not', () => {
    const { code, output } = runPromtool(['test', 'rules', 'dlm-rules.test.yml'], DIR);
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });

  // The unit tests have teeth: each broken rule makes them fail.
  it.each([
    [
      'a no-leader rule that never fires',
      (r: string) => r.replace('(dlm_raft_is_leader) < 1', '(dlm_raft_is_leader) < 0'),
    ],
    ['a no-leader rule without its 30s grace', (r: string) => r.replace('for: 30s', 'for: 0s')],
    [
      'a no-leader rule that reads any follower as no leader',
      (r: string) =>
        r.replace('sum by (job) (dlm_raft_is_leader) < 1', 'min by (job) (dlm_raft_is_leader) < 1'),
    ],
    [
      "a lag measured against the node's own commit index",
      (r: string) =>
        r.replace(
          'max by (job) (dlm_raft_commit_index) - on (job) group_right () dlm_raft_applied_index',
          'dlm_raft_commit_index - dlm_raft_applied_index',
        ),
    ],
  ])('promtool test rules fails with %s', (_what, edit) => {
    const { code, output } = runPromtool(['test', 'rules', 'dlm-rules.test.yml'], rulesWith(edit));
    expect(output).toContain('FAILED');
    expect(code).not.toBe(0);
  });
});

describe('the metrics the rules name', () => {
  let cluster: TestCluster | null = null;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = null;
  });

  it('are all exported by a node', async () => {
    cluster = new TestCluster();
    const leader = await cluster.leader();
    const traffic = new PeerTraffic({
      id: leader.id,
      send: () => {},
      onMessage: () => {},
      close: () => Promise.resolve(),
    });
    const runtime = new RuntimeWatch();
    try {
      const { body } = await new NodeMetrics(leader, traffic, runtime).render();
      const exported = new Set([...body.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]));
      const named = new Set(
        [...readFileSync(RULES, 'utf8').matchAll(/\bdlm_[a-z_]+/g)].map((match) =>
          match[0].replace(/_(bucket|sum|count)$/, ''),
        ),
      );
      expect(named.size).toBeGreaterThanOrEqual(7);
      for (const name of named) expect(exported, `${name} is named by a rule`).toContain(name);
    } finally {
      runtime.stop();
    }
  });

  it('dlm_backpressure_refusals_total counts the calls refused for backpressure, not other errors', () => {
    const refused: string[] = [];
    const context = {
      node: { status: () => ({ leaderId: null }) },
      logger: () => {},
      options: { backpressureRetryAfterMs: 100 },
      observer: { acquireEnded: () => {}, refused: (method: string) => refused.push(method) },
    } as unknown as ApiContext;
    callFailureOf(context, 'Acquire', new DlmError('RESOURCE_EXHAUSTED', '100 writes pending'));
    callFailureOf(context, 'Release', new DlmError('UNAVAILABLE', 'no leader'));
    expect(refused).toEqual(['Acquire']);
  });
});
