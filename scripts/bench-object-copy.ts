/**
 * Why hot paths add a key to a copy with withFields (src/util/objects.ts) and not with a
 * spread: builds Raft-message-shaped copies each way and prints the time per copy and
 * what V8's young-generation collections did meanwhile (from --trace-gc, in a child
 * process). Prints numbers; it is not a test.
 *
 *   node --import tsx scripts/bench-object-copy.ts [--copies 3000000]
 */
import { spawnSync } from 'node:child_process';
import { withFields } from '../src/util/objects.ts';

const FORMS = ['spread-adds-key', 'withFields', 'spread-replaces-key'] as const;
type Form = (typeof FORMS)[number];

function copiesFlag(): number {
  const at = process.argv.indexOf('--copies');
  const value = at === -1 ? 3_000_000 : Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) {
    process.stderr.write('--copies must be a positive whole number\n');
    process.exit(2);
  }
  return value;
}

/** Three message shapes, as a leader sends them, so the copy sites see several maps. */
function sources(): object[] {
  const made: object[] = [];
  for (let i = 0; i < 3_000; i++) {
    if (i % 3 === 0)
      made.push({
        type: 'AppendEntries',
        to: 'n2',
        term: 2,
        prevLogIndex: i,
        entries: [],
        leaderCommit: i,
      });
    else if (i % 3 === 1)
      made.push({ type: 'Heartbeat', to: 'n2', term: 2, leaderCommit: i, readSequence: 0 });
    else
      made.push({ type: 'AppendEntriesResponse', to: 'n1', term: 2, success: true, matchIndex: i });
  }
  return made;
}

function runChild(form: Form, copies: number): void {
  const made = sources();
  let kept: object = {};
  const startedNs = process.hrtime.bigint();
  for (let i = 0; i < copies; i++) {
    const source = made[i % made.length] as { to: string };
    if (form === 'spread-adds-key') kept = { ...source, from: 'n1' };
    else if (form === 'withFields') kept = withFields(source, { from: 'n1' });
    else kept = { ...source, to: 'n3' };
  }
  const ns = Number(process.hrtime.bigint() - startedNs) / copies;
  process.stdout.write(`${JSON.stringify({ ns, keys: Object.keys(kept).length })}\n`);
}

function parent(copies: number): void {
  console.log(`${copies} copies each, Node ${process.version}`);
  console.log('form                  ns/copy  scavenges  scavenge ms (sum)  heap after, MB (mean)');
  for (const form of FORMS) {
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--trace-gc',
        '--min-semi-space-size=16',
        import.meta.filename,
        '--child',
        form,
        '--copies',
        String(copies),
      ],
      { encoding: 'utf8' },
    );
    if (child.status !== 0) throw new Error(`${form} child failed: ${child.stderr}`);
    let scavenges = 0;
    let pauseMs = 0;
    let heapAfterMb = 0;
    let result = { ns: Number.NaN };
    for (const line of child.stdout.split('\n')) {
      const scavenge = /Scavenge ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+)/.exec(
        line,
      );
      if (scavenge !== null) {
        scavenges++;
        pauseMs += Number(scavenge[3]);
        // Copies that survive scavenges pile up in the old generation until a full GC.
        heapAfterMb += Number(scavenge[2]);
      } else if (line.startsWith('{')) result = JSON.parse(line);
    }
    console.log(
      `${form.padEnd(20)} ${result.ns.toFixed(0).padStart(8)}  ${String(scavenges).padStart(9)}  ${pauseMs.toFixed(1).padStart(17)}  ${(heapAfterMb / Math.max(scavenges, 1)).toFixed(1).padStart(21)}`,
    );
  }
}

const copies = copiesFlag();
const childAt = process.argv.indexOf('--child');
if (childAt === -1) parent(copies);
else runChild(process.argv[childAt + 1] as Form, copies);
