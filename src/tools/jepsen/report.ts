import { holdsOf } from './checker.ts';
import { faultWindows, type NemesisEvent, type NemesisKind, type Op } from './history.ts';
import { type Anomaly, type CheckerVerdict, opKindLabel, type RunSummary } from './summary.ts';

/**
 * The report of a Jepsen run as one self-contained HTML page: inline CSS and SVG, no
 * script, no fetch, so it opens from the file system anywhere. It draws from the
 * summary and the history alone (not from the run's objects), so it can be drawn again
 * from a results directory's summary.json and history.jsonl.
 *
 * Sized for long runs (600 s, ~30,000 ops): the overview merges holds less than a pixel
 * apart, the latency plot draws ops that land on one pixel once, and the holds in
 * detail come in strips short enough for a typical hold to carry its token; the page
 * says where it merged.
 */

export interface ReportHistory {
  readonly ops: readonly Op[];
  readonly nemesisEvents: readonly NemesisEvent[];
}

const SVG_WIDTH_PX = 1320;
const PLOT_LEFT_PX = 70;
const PLOT_RIGHT_PX = 16;
const PLOT_WIDTH_PX = SVG_WIDTH_PX - PLOT_LEFT_PX - PLOT_RIGHT_PX;
const LANE_HEIGHT_PX = 18;
const BAR_HEIGHT_PX = 13;
const NEMESIS_ROW_HEIGHT_PX = 16;
const AXIS_HEIGHT_PX = 22;
const LATENCY_PLOT_HEIGHT_PX = 260;
/** Above the latency plot: ops that never got an answer have no latency, only a start. */
const NO_ANSWER_BAND_PX = 24;
/** One character of the 10 px monospace labels: whether a label fits in its bar. */
const LABEL_CHAR_WIDTH_PX = 6.2;
/** Strip lengths to choose from (s): round numbers, so strip edges read easily. */
const STRIP_LENGTHS_S = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1_800, 3_600];
/**
 * More strips than this and the strip gets longer (and fewer tokens fit): 1 s strips for a
 * 600 s run, each reached by a click on the overview.
 */
const MAX_STRIPS = 600;
const ANOMALIES_SHOWN = 5;
/** Past this many latency marks the dots get smaller and fainter, so dense areas show as shades. */
const DENSE_MARKS = 5_000;

/** Locks in cool colours, faults in warm or grey ones, so a hold never looks like a fault. */
const LOCK_COLORS = ['#3b7dd8', '#2a9d8f', '#5e60ce', '#52b788', '#0096c7', '#7b8cde'];
const NEMESIS_COLORS: Partial<Record<NemesisKind, string>> = {
  kill: '#d62728',
  pause: '#ff7f0e',
  'register-pause': '#8c564b',
  'client-pause': '#b5179e',
  partition: '#546e7a',
  clock: '#8c8c1a',
  'disk-full': '#e76f51',
  corrupt: '#9d0208',
  'member-add': '#a8a8a8',
  'member-remove': '#6c6c6c',
};
const SERIES_COLORS: Record<string, string> = {
  acquire: '#3b7dd8',
  release: '#2a9d8f',
  'write fenced': '#c98a00',
  'write ignore-tokens': '#8a6bd1',
};
const OTHER_COLOR = '#7f7f7f';

/** Times in a view are ms since the workload began. */
interface HoldBar {
  readonly client: string;
  readonly lock: string;
  readonly token: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly end: 'released' | 'session ended' | 'run ended';
  /** An invalid checker named its acquire. */
  readonly flagged: boolean;
}

interface NemesisBar {
  readonly kind: NemesisKind;
  readonly target: string;
  readonly detail: string | undefined;
  readonly fromMs: number;
  readonly toMs: number;
  /** Row in the nemesis lane: overlapping faults (a client pause in a kill) stack. */
  readonly row: number;
}

interface RunView {
  readonly durationMs: number;
  readonly clients: readonly string[];
  readonly locks: readonly string[];
  readonly holds: readonly HoldBar[];
  readonly nemeses: readonly NemesisBar[];
  readonly nemesisRows: number;
  readonly ops: readonly Op[];
  readonly startMs: number;
}

interface TimeScale {
  readonly fromMs: number;
  readonly toMs: number;
}

export function renderReport(
  summary: RunSummary,
  history: ReportHistory,
  logFiles: readonly string[] = [],
): string {
  const view = viewOf(summary, history);
  const whole: TimeScale = { fromMs: 0, toMs: view.durationMs };
  const latency = latencySvg(view, whole);
  const stripMs = stripLengthMs(view);
  return page(summary.runId, [
    headerHtml(summary),
    verdictsHtml(summary.checkers, (anomaly) => anomalyLink(view, stripMs, anomaly)),
    section(
      'Holds per client',
      `<p class="note">${holdsNote(view)} Shaded: nemesis faults, labelled in the top lane. This overview merges holds of one lock less than a pixel apart into one bar (hover for how many); the strips at the end of the page draw every hold: click the overview to jump to one.</p>${legendHtml(view)}${timelineSvg(view, whole, { stripMs })}`,
      'holds',
    ),
    section(
      'Latency over time',
      `<p class="note">Each op at its start time; y is its latency (log scale). ● ok, ✕ fail; ops that never got an answer (info) are ticks in the top band. ${latency.total} ops drawn as ${latency.marks} marks: ops of one kind and outcome on the same pixel are drawn once.</p>${seriesLegendHtml(view.ops)}${latency.svg}`,
    ),
    filesHtml(logFiles),
    stripsHtml(view, stripMs),
  ]);
}

function viewOf(summary: RunSummary, history: ReportHistory): RunView {
  const startMs = summary.workloadStartMs;
  const flagged = flaggedOps(summary.checkers);
  const holds = holdsOf(history.ops, summary.workloadEndMs).map(
    (hold): HoldBar => ({
      client: hold.client,
      lock: hold.lock,
      token: hold.acquire.token ?? '?',
      fromMs: hold.startMs - startMs,
      toMs: hold.endMs - startMs,
      end:
        hold.release !== null && hold.endMs === hold.release.invokeMs
          ? 'released'
          : hold.endMs === hold.acquire.lostAtMs
            ? 'session ended'
            : 'run ended',
      flagged: flagged.has(hold.acquire.id),
    }),
  );
  const windows = faultWindows(history.nemesisEvents, summary.workloadEndMs).map((w) => ({
    kind: w.kind,
    target: w.target,
    detail: w.detail,
    fromMs: w.from - startMs,
    toMs: w.to - startMs,
  }));
  const nemeses = stackRows(windows);
  return {
    durationMs: Math.max(1, summary.workloadEndMs - startMs),
    clients: sortedUnique(history.ops.map((op) => op.client)),
    // A set's hold is drawn on each of its locks, some of which no op names as its lock.
    locks: sortedUnique(history.ops.flatMap((op) => [op.lock, ...(op.locks ?? [])])),
    holds,
    nemeses,
    nemesisRows: Math.max(1, ...nemeses.map((n) => n.row + 1)),
    ops: history.ops,
    startMs,
  };
}

/** The ops named by the anomalies of invalid checkers: their holds are outlined in red. */
function flaggedOps(checkers: readonly CheckerVerdict[]): Set<number> {
  const ids = new Set<number>();
  for (const checker of checkers) {
    if (checker.valid !== false) continue;
    for (const anomaly of checker.details.anomalies ?? []) {
      for (const id of anomaly.ops ?? []) ids.add(id);
    }
  }
  return ids;
}

/** Gives each fault the first row where it overlaps no earlier fault. */
function stackRows(windows: readonly Omit<NemesisBar, 'row'>[]): NemesisBar[] {
  const rowEndsMs: number[] = [];
  return [...windows]
    .sort((a, b) => a.fromMs - b.fromMs)
    .map((window) => {
      let row = rowEndsMs.findIndex((endMs) => endMs <= window.fromMs);
      if (row === -1) row = rowEndsMs.length;
      rowEndsMs[row] = window.toMs;
      return { ...window, row };
    });
}

function sortedUnique(values: readonly string[]): string[] {
  return [...new Set(values)].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

// ---- the page ----

function page(runId: string, sections: readonly string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>dlm jepsen ${esc(runId)}</title>
<style>${CSS}</style></head>
<body>
${sections.join('\n')}
</body></html>
`;
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; max-width: ${SVG_WIDTH_PX + 20}px; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 24px 0 6px; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; color: #555; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono, pre { font: 12px ui-monospace, monospace; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 4px; font-weight: 700; color: #fff; font-size: 12px; }
.valid { background: #2e7d32; } .invalid { background: #c62828; } .unknown { background: #757575; }
.checker { border: 1px solid #ddd; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.checker.is-invalid { border-color: #c62828; background: #fff5f5; }
.checker h3 { font-size: 14px; margin: 0; display: flex; gap: 8px; align-items: center; }
.stats { color: #555; font-size: 12px; } .note { color: #555; font-size: 13px; margin: 4px 0; }
ol.anomalies { margin: 4px 0; padding-left: 22px; } ol.anomalies li { font: 12px ui-monospace, monospace; overflow-wrap: anywhere; }
.skipped { color: #c62828; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 4px 0; }
.swatch { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: middle; }
svg { display: block; margin: 4px 0; } svg text { font: 10px ui-monospace, monospace; }
`;

function section(title: string, body: string, id?: string): string {
  return `<section${id === undefined ? '' : ` id="${id}"`}><h2>${esc(title)}</h2>${body}</section>`;
}

function verdictBadge(valid: boolean | 'unknown'): string {
  const [cls, text] =
    valid === 'unknown'
      ? ['unknown', 'UNKNOWN']
      : valid
        ? ['valid', 'VALID']
        : ['invalid', 'INVALID'];
  return `<span class="badge ${cls}">${text}</span>`;
}

function headerHtml(summary: RunSummary): string {
  const { options } = summary;
  const nemeses = options.nemeses === undefined ? 'all' : options.nemeses.join(', ');
  const facts: [string, string][] = [
    ['started', `${esc(summary.startedAt)} (seed ${options.seed})`],
    [
      'workload',
      `${options.seconds} s, ${options.nodes} nodes, ${options.clients} clients, ${options.locks} locks`,
    ],
    ['nemeses asked for', esc(nemeses)],
    ['wall time', `${(summary.wallMs / 1_000).toFixed(1)} s (cluster start to end of checks)`],
    [
      'grants',
      `${summary.grants.acknowledged} acknowledged; ${summary.grants.inLog} in the Raft log, ${summary.grants.inLogUnacknowledged} of them no client was told of`,
    ],
    ['nemesis events', `${summary.nemesis.total}: ${countsText(summary.nemesis.byKind)}`],
  ];
  for (const { nemesis, reason } of summary.nemesis.skipped)
    facts.push([esc(nemesis), `<span class="skipped">skipped, not passed</span>: ${esc(reason)}`]);
  const rows = facts.map(([key, value]) => `<tr><th>${key}</th><td>${value}</td></tr>`).join('');
  return `<header><h1>dlm Jepsen run <code>${esc(summary.runId)}</code> ${verdictBadge(summary.valid)}</h1>
<table>${rows}</table>
<p class="note">Rerun the schedule (not the OS timing): <code>${esc(rerunCommand(summary))}</code></p>
${opsTableHtml(summary)}</header>`;
}

function rerunCommand(summary: RunSummary): string {
  const { options } = summary;
  const nemeses = options.nemeses === undefined ? '' : ` --nemesis ${options.nemeses.join(',')}`;
  return `npm run jepsen -- --seconds ${options.seconds} --seed ${options.seed} --nodes ${options.nodes} --clients ${options.clients} --locks ${options.locks}${nemeses}`;
}

function countsText(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? 'none' : entries.map(([key, n]) => `${esc(key)} ${n}`).join(', ');
}

function opsTableHtml(summary: RunSummary): string {
  const rows = Object.entries(summary.ops.byKind)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([kind, n]) =>
        `<tr><td>${esc(kind)}</td><td class="n">${n.ok}</td><td class="n">${n.fail}</td><td class="n">${n.info}</td><td class="n">${n.ok + n.fail + n.info}</td></tr>`,
    )
    .join('');
  return `<table><tr><th>${summary.ops.total} ops</th><th>ok</th><th>fail</th><th>info</th><th>all</th></tr>${rows}</table>`;
}

function verdictsHtml(
  checkers: readonly CheckerVerdict[],
  link: (anomaly: Anomaly) => string,
): string {
  return section('Checkers', checkers.map((checker) => checkerHtml(checker, link)).join(''));
}

/** A link to the strip where the anomaly's first op began, or nothing if it names none. */
function anomalyLink(view: RunView, stripMs: number, anomaly: Anomaly): string {
  const id = anomaly.ops?.[0];
  const op = id === undefined ? undefined : view.ops[id];
  if (op === undefined) return '';
  const atMs = op.invokeMs - view.startMs;
  return ` <a href="#strip-${Math.max(0, Math.floor(atMs / stripMs))}">at ${seconds(atMs)}</a>`;
}

function checkerHtml(checker: CheckerVerdict, link: (anomaly: Anomaly) => string): string {
  const { note, stats, anomalies = [], anomalyCount = anomalies.length } = checker.details;
  const statsText =
    stats === undefined
      ? ''
      : `<div class="stats">${Object.entries(stats)
          .map(([key, value]) => `${esc(key)} ${esc(String(value))}`)
          .join(' · ')}</div>`;
  const shown = anomalies
    .slice(0, ANOMALIES_SHOWN)
    .map((a) => `<li>${esc(a.message)}${link(a)}</li>`)
    .join('');
  const more =
    anomalyCount > ANOMALIES_SHOWN
      ? `<div class="note">… and ${anomalyCount - ANOMALIES_SHOWN} more (summary.json lists up to ${anomalies.length})</div>`
      : '';
  const label = checker.valid === false ? 'anomalies' : 'found';
  const list =
    shown === ''
      ? ''
      : `<div class="note">${label} (${anomalyCount}):</div><ol class="anomalies">${shown}</ol>${more}`;
  const cls = checker.valid === false ? ' is-invalid' : '';
  return `<div class="checker${cls}"><h3>${verdictBadge(checker.valid)} ${esc(checker.name)}</h3>${note === undefined ? '' : `<div class="note">${esc(note)}</div>`}${statsText}${list}</div>`;
}

function holdsNote(view: RunView): string {
  return `${view.holds.length} holds: a bar runs from the acquire's acknowledgement to the release's invocation (solid), the session's end (lease lost or given up: faded, dashed) or the run's end; labelled with its fencing token where it fits, and outlined red if a checker named it.`;
}

function legendHtml(view: RunView): string {
  const locks = view.locks.map((lock, i) => swatch(lockColor(i), `lock ${lock}`));
  const kinds = [...new Set(view.nemeses.map((n) => n.kind))].map((kind) =>
    swatch(nemesisColor(kind), kind, 0.35),
  );
  return `<div class="legend">${[...locks, ...kinds].join('')}</div>`;
}

function seriesLegendHtml(ops: readonly Op[]): string {
  const series = sortedUnique(ops.map(opKindLabel)).map((label) =>
    swatch(seriesColor(label), label),
  );
  return `<div class="legend">${series.join('')}</div>`;
}

function swatch(color: string, label: string, opacity = 1): string {
  return `<span><span class="swatch" style="background:${color};opacity:${opacity}"></span>${esc(label)}</span>`;
}

function filesHtml(logFiles: readonly string[]): string {
  const links = ['history.jsonl', 'summary.json', ...logFiles.map((name) => `logs/${name}`)].map(
    (path) => `<a href="${esc(path)}">${esc(path)}</a>`,
  );
  return section('Files', `<p class="mono">${links.join(' · ')}</p>`);
}

// ---- the holds timeline ----

function xOf(scale: TimeScale, ms: number): number {
  const clamped = Math.min(scale.toMs, Math.max(scale.fromMs, ms));
  return PLOT_LEFT_PX + ((clamped - scale.fromMs) / (scale.toMs - scale.fromMs)) * PLOT_WIDTH_PX;
}

/**
 * The nemesis lane, one lane per client, and a time axis; faults shaded behind it all.
 * The overview (given the strip length) merges holds and links each strip's span to it.
 */
function timelineSvg(view: RunView, scale: TimeScale, overview?: { stripMs: number }): string {
  const merge = overview !== undefined;
  const nemesisHeightPx = view.nemesisRows * NEMESIS_ROW_HEIGHT_PX;
  const lanesTopPx = nemesisHeightPx + 4;
  const lanesHeightPx = view.clients.length * LANE_HEIGHT_PX;
  const heightPx = lanesTopPx + lanesHeightPx + AXIS_HEIGHT_PX;
  const parts = [
    overview === undefined
      ? ''
      : stripLinksSvg(scale, overview.stripMs, lanesTopPx + lanesHeightPx),
    shadingSvg(view, scale, 0, lanesTopPx + lanesHeightPx),
    afterRunSvg(view, scale, lanesTopPx + lanesHeightPx),
    nemesisLaneSvg(view, scale),
    ...view.clients.map((client, lane) =>
      clientLaneSvg(view, scale, client, lanesTopPx + lane * LANE_HEIGHT_PX, merge),
    ),
    axisSvg(scale, lanesTopPx + lanesHeightPx),
  ];
  return svg(heightPx, parts);
}

function svg(heightPx: number, parts: readonly string[]): string {
  return `<svg width="${SVG_WIDTH_PX}" height="${heightPx}" viewBox="0 0 ${SVG_WIDTH_PX} ${heightPx}">${parts.join('')}</svg>`;
}

/** Strictly inside: a hold that ends where a strip begins leaves no sliver in it. */
function visible(scale: TimeScale, item: { fromMs: number; toMs: number }): boolean {
  return item.toMs > scale.fromMs && item.fromMs < scale.toMs;
}

function shadingSvg(view: RunView, scale: TimeScale, topPx: number, heightPx: number): string {
  return view.nemeses
    .filter((n) => visible(scale, n))
    .map((n) => {
      const [x, width] = span(scale, n.fromMs, n.toMs);
      return `<rect x="${px(x)}" y="${topPx}" width="${px(width)}" height="${heightPx}" fill="${nemesisColor(n.kind)}" opacity="0.13"/>`;
    })
    .join('');
}

/** The last strip runs past the run's end: grey that part out, so no one reads it as idle. */
function afterRunSvg(view: RunView, scale: TimeScale, heightPx: number): string {
  if (scale.toMs <= view.durationMs) return '';
  const [x, width] = span(scale, view.durationMs, scale.toMs);
  return `<rect x="${px(x)}" y="0" width="${px(width)}" height="${heightPx}" fill="#e0e0e0"/>${fittingLabel('run ended', x, heightPx / 2, width, '#555')}`;
}

function nemesisLaneSvg(view: RunView, scale: TimeScale): string {
  const bars = view.nemeses
    .filter((n) => visible(scale, n))
    .map((n) => {
      const [x, width] = span(scale, n.fromMs, n.toMs);
      const y = n.row * NEMESIS_ROW_HEIGHT_PX + 1;
      const label = `${n.kind} ${n.target}`;
      const title = `${label}: ${seconds(n.fromMs)}–${seconds(n.toMs)} (${Math.round(n.toMs - n.fromMs)} ms)${n.detail === undefined ? '' : `\n${n.detail}`}`;
      const text =
        fittingLabel(label, x, y + 10, width, '#fff') ||
        fittingLabel(n.kind, x, y + 10, width, '#fff');
      return `<g><title>${esc(title)}</title><rect x="${px(x)}" y="${y}" width="${px(width)}" height="${NEMESIS_ROW_HEIGHT_PX - 3}" fill="${nemesisColor(n.kind)}" opacity="0.75"/>${text}</g>`;
    });
  return `<text x="4" y="11">nemesis</text>${bars.join('')}`;
}

/** A bar: a single hold, or (in the overview) a run of holds of one lock merged. */
interface Segment {
  readonly lock: string;
  readonly fromMs: number;
  toMs: number;
  readonly holds: HoldBar[];
}

function clientLaneSvg(
  view: RunView,
  scale: TimeScale,
  client: string,
  topPx: number,
  merge: boolean,
): string {
  const holds = view.holds.filter((h) => h.client === client && visible(scale, h));
  const segments = merge ? mergeSegments(holds, scale) : holds.map(singleSegment);
  const bars = segments.map((segment) => segmentSvg(view, scale, segment, topPx));
  const line = `<line x1="${PLOT_LEFT_PX}" x2="${SVG_WIDTH_PX - PLOT_RIGHT_PX}" y1="${topPx + LANE_HEIGHT_PX - 0.5}" y2="${topPx + LANE_HEIGHT_PX - 0.5}" stroke="#eee"/>`;
  return `<text x="4" y="${topPx + 12}">${esc(client)}</text>${line}${bars.join('')}`;
}

function singleSegment(hold: HoldBar): Segment {
  return { lock: hold.lock, fromMs: hold.fromMs, toMs: hold.toMs, holds: [hold] };
}

/** Holds of one lock that start within a pixel of the previous one's end become one bar. */
function mergeSegments(holds: readonly HoldBar[], scale: TimeScale): Segment[] {
  const msPerPx = (scale.toMs - scale.fromMs) / PLOT_WIDTH_PX;
  const segments: Segment[] = [];
  for (const hold of [...holds].sort((a, b) => a.fromMs - b.fromMs)) {
    const last = segments.at(-1);
    if (last !== undefined && last.lock === hold.lock && hold.fromMs - last.toMs < msPerPx) {
      last.toMs = Math.max(last.toMs, hold.toMs);
      last.holds.push(hold);
    } else {
      segments.push(singleSegment(hold));
    }
  }
  return segments;
}

function segmentSvg(view: RunView, scale: TimeScale, segment: Segment, topPx: number): string {
  const [x, width] = span(scale, segment.fromMs, segment.toMs);
  const first = segment.holds[0] as HoldBar;
  const single = segment.holds.length === 1;
  const flagged = segment.holds.some((h) => h.flagged);
  const faded = single && first.end === 'session ended';
  const stroke = flagged
    ? ' stroke="#c62828" stroke-width="2"'
    : faded
      ? ' stroke="#333" stroke-dasharray="2 2"'
      : '';
  const color = lockColor(view.locks.indexOf(segment.lock));
  const y = topPx + (LANE_HEIGHT_PX - BAR_HEIGHT_PX) / 2;
  const rect = `<rect x="${px(x)}" y="${px(y)}" width="${px(Math.max(width, 1))}" height="${BAR_HEIGHT_PX}" fill="${color}"${faded ? ' fill-opacity="0.5"' : ''}${stroke}/>`;
  const label = single ? fittingLabel(first.token, x, y + 10, width, faded ? '#000' : '#fff') : '';
  return `<g><title>${esc(segmentTitle(segment))}</title>${rect}${label}</g>`;
}

function segmentTitle(segment: Segment): string {
  const first = segment.holds[0] as HoldBar;
  if (segment.holds.length === 1)
    return `${first.client} ${first.lock} token ${first.token}: ${seconds(first.fromMs)}–${seconds(first.toMs)} (${Math.round(first.toMs - first.fromMs)} ms), ${first.end}${first.flagged ? '; named by a failed checker' : ''}`;
  const last = segment.holds.at(-1) as HoldBar;
  return `${first.client} ${first.lock}: ${segment.holds.length} holds merged, tokens ${first.token}–${last.token}, ${seconds(segment.fromMs)}–${seconds(segment.toMs)}`;
}

/** The label, centred in its bar, or nothing when it does not fit. */
function fittingLabel(
  label: string,
  x: number,
  baselinePx: number,
  widthPx: number,
  color: string,
): string {
  if (labelWidthPx(label.length) > widthPx) return '';
  return `<text x="${px(x + widthPx / 2)}" y="${px(baselinePx)}" text-anchor="middle" fill="${color}">${esc(label)}</text>`;
}

function labelWidthPx(chars: number): number {
  return chars * LABEL_CHAR_WIDTH_PX + 4;
}

/** [x, width] in px of an interval, clipped to the scale. */
function span(scale: TimeScale, fromMs: number, toMs: number): [number, number] {
  const x = xOf(scale, fromMs);
  return [x, Math.max(0, xOf(scale, toMs) - x)];
}

function axisSvg(scale: TimeScale, topPx: number): string {
  const stepMs = tickStepMs(scale.toMs - scale.fromMs);
  const ticks: string[] = [];
  for (let ms = Math.ceil(scale.fromMs / stepMs) * stepMs; ms <= scale.toMs; ms += stepMs) {
    const x = px(xOf(scale, ms));
    ticks.push(
      `<line x1="${x}" x2="${x}" y1="${topPx}" y2="${topPx + 4}" stroke="#555"/><text x="${x}" y="${topPx + 15}" text-anchor="middle">${seconds(ms)}</text>`,
    );
  }
  return `<line x1="${PLOT_LEFT_PX}" x2="${SVG_WIDTH_PX - PLOT_RIGHT_PX}" y1="${topPx}" y2="${topPx}" stroke="#555"/>${ticks.join('')}`;
}

/** A round step giving at most about 12 ticks. */
function tickStepMs(durationMs: number): number {
  const steps = [0.1, 0.2, 0.5, ...STRIP_LENGTHS_S].map((s) => s * 1_000);
  return steps.find((step) => durationMs / step <= 12) ?? (steps.at(-1) as number);
}

// ---- holds in detail ----

function stripsHtml(view: RunView, stripMs: number): string {
  const strips: string[] = [];
  for (let i = 0; i * stripMs < view.durationMs; i++) {
    const scale = { fromMs: i * stripMs, toMs: (i + 1) * stripMs };
    strips.push(
      `<div class="note" id="strip-${i}">${seconds(scale.fromMs)} – ${seconds(scale.toMs)} <a href="#holds">overview</a></div>${timelineSvg(view, scale)}`,
    );
  }
  return section(
    `Holds in detail: ${strips.length} strips of ${stripMs / 1_000} s`,
    `<p class="note">Every hold, labelled with its token where the label fits (hover a bar for its token, times and how it ended).</p>${strips.join('')}`,
  );
}

/** Transparent spans over the overview, one per strip, each a link to its strip. */
function stripLinksSvg(scale: TimeScale, stripMs: number, heightPx: number): string {
  const links: string[] = [];
  for (let i = 0; i * stripMs < scale.toMs; i++) {
    const [x, width] = span(scale, i * stripMs, (i + 1) * stripMs);
    links.push(
      `<a href="#strip-${i}"><rect x="${px(x)}" y="0" width="${px(width)}" height="${heightPx}" fill="#fff" fill-opacity="0"/></a>`,
    );
  }
  return links.join('');
}

/**
 * The longest round strip in which the median hold is wide enough for the longest token
 * to be written on it, within MAX_STRIPS.
 */
function stripLengthMs(view: RunView): number {
  const durations = view.holds.map((h) => h.toMs - h.fromMs).sort((a, b) => a - b);
  const medianMs = durations[Math.floor(durations.length / 2)] ?? view.durationMs;
  const tokenChars = Math.max(1, maxOf(view.holds.map((h) => h.token.length)));
  const wantedMs = (medianMs * PLOT_WIDTH_PX) / labelWidthPx(tokenChars);
  const lengthsMs = STRIP_LENGTHS_S.map((s) => s * 1_000);
  const longest = lengthsMs.at(-1) as number;
  // No longer than the run: a short run is one strip as wide as the page.
  const wholeRunMs = lengthsMs.find((ms) => ms >= view.durationMs) ?? longest;
  const fitting = lengthsMs.filter((ms) => ms <= Math.min(wantedMs, wholeRunMs)).at(-1);
  const shortest = fitting ?? (lengthsMs[0] as number);
  return lengthsMs.find((ms) => ms >= shortest && view.durationMs / ms <= MAX_STRIPS) ?? longest;
}

// ---- latency ----

/** Latency of every op by its start time, log scale; unanswered ops as ticks above. */
function latencySvg(
  view: RunView,
  scale: TimeScale,
): { svg: string; total: number; marks: number } {
  const answered = view.ops.filter((op) => op.completeMs !== null);
  const latenciesMs = answered.map((op) => (op.completeMs as number) - op.invokeMs);
  // Whole decades around every latency, at least one, none below 0.1 ms.
  const lowMs = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(minOf(latenciesMs), 1))));
  const highMs = 10 ** Math.ceil(Math.log10(Math.max(lowMs * 10, maxOf(latenciesMs))));
  const plotTopPx = NO_ANSWER_BAND_PX;
  const yOf = (ms: number): number =>
    plotTopPx +
    LATENCY_PLOT_HEIGHT_PX *
      (1 - (Math.log10(Math.max(ms, lowMs)) - Math.log10(lowMs)) / Math.log10(highMs / lowMs));
  const paths = new Map<string, Set<string>>();
  for (const op of view.ops) {
    const x = Math.round(xOf(scale, op.invokeMs - view.startMs));
    const key = `${opKindLabel(op)}|${op.outcome}`;
    const y = op.completeMs === null ? 0 : Math.round(yOf(op.completeMs - op.invokeMs));
    const marks = paths.get(key) ?? new Set<string>();
    marks.add(`${x},${y}`);
    paths.set(key, marks);
  }
  const marks = [...paths.values()].reduce((sum, set) => sum + set.size, 0);
  const heightPx = plotTopPx + LATENCY_PLOT_HEIGHT_PX + AXIS_HEIGHT_PX;
  const parts = [
    shadingSvg(view, scale, 0, plotTopPx + LATENCY_PLOT_HEIGHT_PX),
    `<text x="4" y="14">no answer</text><line x1="${PLOT_LEFT_PX}" x2="${SVG_WIDTH_PX - PLOT_RIGHT_PX}" y1="${plotTopPx - 2}" y2="${plotTopPx - 2}" stroke="#ccc"/>`,
    latencyGridSvg(lowMs, highMs, yOf),
    ...[...paths].map(([key, set]) => marksSvg(key, set, marks > DENSE_MARKS)),
    axisSvg(scale, plotTopPx + LATENCY_PLOT_HEIGHT_PX),
  ];
  return { svg: svg(heightPx, parts), total: view.ops.length, marks };
}

function latencyGridSvg(lowMs: number, highMs: number, yOf: (ms: number) => number): string {
  const lines: string[] = [];
  for (let ms = lowMs; ms <= highMs * 1.001; ms *= 10) {
    const y = px(yOf(ms));
    const label = ms >= 1_000 ? `${ms / 1_000} s` : `${Number(ms.toPrecision(1))} ms`;
    lines.push(
      `<line x1="${PLOT_LEFT_PX}" x2="${SVG_WIDTH_PX - PLOT_RIGHT_PX}" y1="${y}" y2="${y}" stroke="#e5e5e5"/><text x="${PLOT_LEFT_PX - 4}" y="${px(yOf(ms) + 3)}" text-anchor="end">${label}</text>`,
    );
  }
  return lines.join('');
}

/**
 * All marks of one kind and outcome as a single path, which a browser draws far faster
 * than thousands of elements: a dot is a zero-length segment with round caps.
 */
function marksSvg(key: string, points: ReadonlySet<string>, dense: boolean): string {
  const [label = '', outcome] = key.split('|');
  const color = seriesColor(label);
  const d: string[] = [];
  for (const point of points) {
    const [x, y] = point.split(',').map(Number) as [number, number];
    if (outcome === 'info') d.push(`M${x} 4v${NO_ANSWER_BAND_PX - 10}`);
    else if (outcome === 'fail') d.push(`M${x - 3} ${y - 3}l6 6m0 -6l-6 6`);
    else d.push(`M${x} ${y}h0`);
  }
  const width = outcome === 'ok' ? (dense ? 2 : 3.5) : 1.5;
  const opacity = dense && outcome === 'ok' ? 0.45 : 0.8;
  return `<path d="${d.join('')}" stroke="${color}" stroke-width="${width}" stroke-linecap="round" fill="none" opacity="${opacity}"/>`;
}

// ---- small helpers ----

function lockColor(index: number): string {
  return LOCK_COLORS[Math.max(0, index) % LOCK_COLORS.length] as string;
}

function nemesisColor(kind: NemesisKind): string {
  return NEMESIS_COLORS[kind] ?? OTHER_COLOR;
}

function seriesColor(label: string): string {
  return SERIES_COLORS[label] ?? OTHER_COLOR;
}

/** Seconds to the 10 ms, trailing zeros dropped: "0.11 s", "590 s", "590.05 s". */
function seconds(ms: number): string {
  return `${Number((ms / 1_000).toFixed(2))} s`;
}

/** Math.min/max without spreading: a long run's tens of thousands of values overflow the stack. */
function minOf(values: readonly number[]): number {
  return values.reduce((min, value) => Math.min(min, value), Number.POSITIVE_INFINITY);
}

function maxOf(values: readonly number[]): number {
  return values.reduce((max, value) => Math.max(max, value), Number.NEGATIVE_INFINITY);
}

function px(value: number): string {
  return String(Math.round(value * 10) / 10);
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}
