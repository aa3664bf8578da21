import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { ENTRY_NESTING_MAX, entryPayloadProblem } from '../../src/node/entry-codec.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ids, TestCluster, until } from './cluster-harness.ts';

/**
 * Review of 910a338 (02566b5): the leader drops a forward "whose data does not decode as
 * a log entry", so that no replica stops where it applies it. But whether msgpackr
 * decodes nested data is a matter of the decoding process's stack, and that depends on
 * how warm V8's JIT is: a cold process decodes about 4,400 nested arrays, one whose
 * decoder has run deep decodes a while (optimized frames are smaller) about 10,000.
 * Forwards the check refuses warm the leader up just as well (the whole data is decoded
 * before p and c are looked at; and peerMessageProblem runs before the membership and
 * cluster-id checks, so a stranger's forwards do it too).
 *
 * So a member's forward nested ~8,000 deep passes a warmed leader's check and is
 * proposed, and each other replica, a separate process that never decoded anything deep,
 * throws RangeError in applyEntry's decodeEntry (node.ts: the Ready loop catches it and
 * stopOnFailure), at the same index, and again when it restarts and replays its log:
 * the one-byte-forward failure the check was meant to end. Here the other replicas share
 * this process (and its warm JIT), so the entry's bytes are decoded as a restarted
 * replica would, in a fresh node process.
 *
 * Fixed by bounding the nesting (ENTRY_NESTING_MAX, far below any process's stack
 * limit), so every node gives the same answer; the test now checks the deep forward is
 * refused for it and that the deepest one allowed decodes in a cold process.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let cluster: TestCluster | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** { p, c: { type: 'KeepAlive', sessionIds: [], x: [[[ … nil … ]]] } }, `depth` arrays deep. */
function nested(depth: number, p: number | null = null): Uint8Array {
  const head = [
    0x82,
    0xa1,
    0x70,
    ...(p === null ? [0xc0] : [p]),
    0xa1,
    0x63,
    0x83,
    0xa4,
    ...Buffer.from('type'),
    0xa9,
    ...Buffer.from('KeepAlive'),
    0xaa,
    ...Buffer.from('sessionIds'),
    0x90,
    0xa1,
    0x78,
  ];
  const out = new Uint8Array(head.length + depth + 1).fill(0x91);
  out.set(head, 0);
  out[out.length - 1] = 0xc0;
  return out;
}

/** decodeEntry in a new node process, as a replica that restarted replays the entry. */
function decodeInFreshProcess(data: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-review-fwd-'));
  dirs.push(dir);
  const file = join(dir, 'entry.bin');
  writeFileSync(file, data);
  const script = `
    import { readFileSync } from 'node:fs';
    import { decodeEntry } from ${JSON.stringify(join(ROOT, 'src/node/entry-codec.ts'))};
    try { decodeEntry(readFileSync(${JSON.stringify(file)})); console.log('decoded'); }
    catch (error) { console.log('threw: ' + error.message); }`;
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  return `${run.stdout}${run.stderr}`.trim();
}

it('a forward the leader found decodable is decodable by every replica', async () => {
  const DEPTH = 8_000;
  const c = new TestCluster();
  cluster = c;
  const leader = await c.leader();
  const member = ids.find((id) => id !== leader.id) as NodeId;
  const sender = c.network.connect(member);
  const rejected: string[] = [];
  leader.observe({ peerMessageRejected: (_from, problem) => rejected.push(problem) });

  // Forwards the check refuses (p: 1 is not a proposal id), after decoding all of them.
  for (let i = 0; i < 2_000; i++) {
    sender.send({
      kind: 'forward',
      from: member,
      to: leader.id,
      proposalId: `warm/${i}`,
      data: nested(4_000, 1),
    });
  }
  await until(() => rejected.length === 2_000, 'the leader refused the warm-up forwards');

  const deep = nested(DEPTH);
  const before = leader.status().commitIndex;
  sender.send({ kind: 'forward', from: member, to: leader.id, proposalId: 'deep', data: deep });
  await until(
    () => leader.status().commitIndex > before || rejected.length > 2_000,
    'the deep forward to be proposed or refused',
  );
  // Fixed: whatever the leader's decoder can do, the nesting bound refuses it, so no
  // replica is ever asked to decode it.
  expect(rejected.slice(2_000)).toHaveLength(1);
  // Refused for its depth where this process's stack decodes it, else for not decoding
  // (which one depends on how warm the JIT is: the very thing the bound makes moot).
  expect(rejected[2_000]).toMatch(/nested deeper than ENTRY_NESTING_MAX|does not decode/);
  expect(entryPayloadProblem(deep)).not.toBeNull();
  // Just past the bound, shallow enough for any process to decode: refused for depth.
  expect(entryPayloadProblem(nested(ENTRY_NESTING_MAX - 1))).toContain('ENTRY_NESTING_MAX');
  // And what the bound lets through, a cold replica process decodes.
  const deepestAllowed = nested(ENTRY_NESTING_MAX - 2);
  expect(entryPayloadProblem(deepestAllowed)).toBeNull();
  expect(decodeInFreshProcess(deepestAllowed)).toBe('decoded');
});
