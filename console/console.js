// The dlm console page: follows /console/events (Server-Sent Events) on the node that
// served it and redraws from each frame (see src/node/console/server.ts). Plain script,
// no build step, no library; text from the cluster (lock names, owners, client names)
// is only ever set as textContent, never parsed as HTML.

const RECONNECT_MS = 2000;

const state = {
  prefix: new URLSearchParams(location.search).get('prefix') ?? '',
  source: null,
  reconnectTimer: null,
  frame: null,
  connected: false,
};

function $(selector) {
  return document.querySelector(selector);
}

/** An element with attributes (class, data-*, …) and children (nodes or text). */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Number.POSITIVE_INFINITY)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A rate per second with two significant digits, small ones included. */
function rate(perSecond) {
  if (perSecond === 0) return '0';
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toPrecision(2);
}

function duration(ms) {
  if (ms < 1000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60)
    return seconds % 60 === 0 ? `${minutes} min` : `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** A Duration from the server: at least `ms` when it began before what the node remembers. */
function since(value) {
  return `${value.atLeast ? '≥ ' : ''}${duration(value.ms)}`;
}

function fillBody(table, rows, columns, emptyText) {
  const body = table.querySelector('tbody');
  body.replaceChildren(
    ...(rows.length > 0
      ? rows
      : [el('tr', null, el('td', { class: 'empty', colspan: columns }, emptyText))]),
  );
}

function pill(text, kind) {
  return el('span', { class: `pill ${kind}` }, text);
}

function renderCluster(frame) {
  const rows = frame.cluster.members.map((member) => {
    const s = member.summary;
    const changes = s === null ? [] : s.leaderChangesAgoMs;
    const changesText =
      s === null
        ? '—'
        : changes.length === 0
          ? 'none'
          : `${changes.length}, last ${duration(Math.min(...changes))} ago`;
    return el(
      'tr',
      {
        'data-node': member.id,
        'data-role': s?.role ?? 'unreachable',
        'data-health': member.health,
      },
      el(
        'td',
        null,
        el('strong', null, member.id),
        ' ',
        el('span', { class: 'muted mono' }, member.metricsAddress),
      ),
      el('td', null, s === null ? '—' : pill(s.role, `role-${s.role.toLowerCase()}`)),
      el('td', { class: 'num' }, s?.term ?? '—'),
      el('td', { class: 'num' }, s?.commitIndex ?? '—'),
      el('td', { class: 'num' }, s?.appliedIndex ?? '—'),
      el('td', { class: 'num' }, member.lagEntries ?? '—'),
      el('td', null, changesText),
      el(
        'td',
        { title: member.problem ?? '' },
        pill(member.health, `health-${member.health.replace(' ', '-')}`),
        member.problem === null ? null : el('span', { class: 'muted' }, ` ${member.problem}`),
      ),
    );
  });
  fillBody($('#cluster table'), rows, 8, 'no members known');
}

/** An owner or client name, or why there is none (blank, or hidden under auth). */
function named(frame, text, missing) {
  if (frame.view.namesHidden) return '(hidden: auth)';
  return text || missing;
}

/** The names a session row lists, and how many more it has than shown. */
function nameList(names, total) {
  if (total === 0) return el('span', { class: 'muted' }, '—');
  return [
    names.map((name, i) => [i > 0 ? ', ' : null, el('code', null, name)]),
    total > names.length ? el('span', { class: 'muted' }, ` +${total - names.length} more`) : null,
  ];
}

function renderLocks(frame) {
  const locks = frame.view.locks;
  const rows = locks.rows.map((lock) => {
    const holders = lock.holders;
    const waiters = el(
      'td',
      { class: 'waiters' },
      lock.waiters.map((waiter) =>
        el(
          'span',
          { class: 'waiter', 'data-session': waiter.sessionId },
          `${named(frame, waiter.owner, '(no owner)')} · s${waiter.sessionId} · ${since(waiter.waiting)}`,
        ),
      ),
      lock.waitersTotal > lock.waiters.length
        ? el('span', { class: 'muted' }, `+${lock.waitersTotal - lock.waiters.length} more`)
        : null,
      lock.waitersTotal === 0 ? el('span', { class: 'muted' }, 'none') : null,
    );
    const name = el(
      'td',
      null,
      el('code', null, lock.lock),
      lock.delayed ? el('span', { class: 'delayed' }, 'lock-delay') : null,
    );
    const holderText =
      holders.length === 0
        ? el('span', { class: 'muted' }, 'free')
        : holders.map((h, i) => [
            i > 0 ? el('br') : null,
            `${named(frame, h.owner, '(no owner)')} · s${h.sessionId}${h.mode === 'shared' ? ' (shared)' : ''}`,
          ]);
    if (lock.holdersTotal > holders.length) {
      holderText.push(
        el('span', { class: 'muted' }, ` +${lock.holdersTotal - holders.length} more`),
      );
    }
    const tokens = holders.map((h, i) => [
      i > 0 ? el('br') : null,
      el('span', { class: 'token' }, h.token),
    ]);
    const held = holders.map((h, i) => [i > 0 ? el('br') : null, since(h.held)]);
    return el(
      'tr',
      { 'data-lock': lock.lock, 'data-token': holders.map((h) => h.token).join(' ') },
      name,
      el('td', null, holderText),
      el('td', { class: 'num' }, tokens),
      el('td', null, held),
      waiters,
    );
  });
  fillBody(
    $('#locks table'),
    rows,
    5,
    locks.prefix === '' ? 'no lock is in use' : `no lock in use starts with “${locks.prefix}”`,
  );
  const shown = locks.rows.length < locks.total ? `, showing the first ${locks.rows.length}` : '';
  const where = locks.prefix === '' ? '' : ` starting with “${locks.prefix}”`;
  $('#locks-count').textContent = `${locks.total} in use${where}${shown}`;
}

function renderContended(frame) {
  const contention = frame.view.contention;
  $('#contended-window').textContent = `(last ${duration(contention.windowMs)})`;
  const rows = contention.rows.map((row) =>
    el(
      'tr',
      { 'data-lock': row.lock },
      el('td', null, el('code', null, row.lock)),
      el('td', { class: 'num' }, row.waits),
      el('td', { class: 'num' }, row.handoffs),
      el('td', { class: 'num' }, rate(row.handoffsPerSecond)),
      el('td', null, row.waitMsMean === null ? '—' : duration(row.waitMsMean)),
      el('td', null, row.waitMsMax === null ? '—' : duration(row.waitMsMax)),
      el('td', { class: 'num' }, row.waitersNow),
    ),
  );
  fillBody($('#contended table'), rows, 7, 'no lock had to queue a request lately');
}

function renderSessions(frame) {
  const sessions = frame.view.sessions;
  const shown = sessions.rows.length < sessions.total ? `, showing ${sessions.rows.length}` : '';
  $('#sessions-count').textContent = `(${sessions.total} open${shown})`;
  const rows = sessions.rows.map((session) =>
    el(
      'tr',
      { 'data-session': session.sessionId },
      el('td', { class: 'num' }, `s${session.sessionId}`),
      el(
        'td',
        null,
        frame.view.namesHidden
          ? el('span', { class: 'muted' }, '(hidden: auth)')
          : session.clientName || el('span', { class: 'muted' }, '(unnamed)'),
      ),
      el('td', null, duration(session.ttlMs)),
      el('td', null, since(session.sinceRefresh)),
      el('td', null, nameList(session.held, session.heldTotal)),
      el('td', null, nameList(session.waiting, session.waitingTotal)),
    ),
  );
  fillBody($('#sessions table'), rows, 6, 'no open session');
}

function renderHeader(frame) {
  const self = frame.view.node;
  $('#served-by').textContent = `served by ${frame.servedBy} · term ${self.term}`;
  const leader = $('#leader');
  leader.className = self.leaderId === null ? 'pill no-leader' : 'pill leader';
  leader.textContent = self.leaderId === null ? 'no leader' : `leader ${self.leaderId}`;
  leader.dataset.leader = self.leaderId ?? '';
  $('#footer').textContent =
    `Locks and sessions as applied on ${frame.servedBy} (index ${self.appliedIndex}; a local read, not linearizable). ` +
    `Times are since the entry applied on ${frame.servedBy}; “≥” marks those older than it remembers. ` +
    `Updated ${new Date().toLocaleTimeString()}.`;
}

function renderBanner() {
  const banner = $('#banner');
  const frame = state.frame;
  let text = null;
  let kind = '';
  if (!state.connected) {
    text = `Lost the connection to ${frame?.servedBy ?? 'the node'}; retrying. What is shown may be out of date.`;
  } else if (frame !== null && frame.view.node.leaderId === null) {
    text = `${frame.servedBy} knows no leader: writes are refused until one is elected (a majority of the nodes must reach each other).`;
  } else if (frame !== null) {
    const unreachable = frame.cluster.members.filter((member) => member.health === 'unreachable');
    if (unreachable.length > 0) {
      kind = 'warn';
      text = `${unreachable.map((member) => member.id).join(', ')} not answering.`;
    }
  }
  banner.hidden = text === null;
  banner.className = kind;
  banner.dataset.kind = text === null ? '' : kind || 'alert';
  banner.textContent = text ?? '';
}

function render(frame) {
  state.frame = frame;
  renderHeader(frame);
  renderCluster(frame);
  renderLocks(frame);
  renderContended(frame);
  renderSessions(frame);
  renderBanner();
}

function setConnected(connected) {
  state.connected = connected;
  const pillNode = $('#connection');
  pillNode.className = `pill ${connected ? 'live' : 'lost'}`;
  pillNode.textContent = connected ? 'live' : 'disconnected';
  renderBanner();
}

function connect() {
  clearTimeout(state.reconnectTimer);
  state.source?.close();
  const source = new EventSource(`/console/events?prefix=${encodeURIComponent(state.prefix)}`);
  state.source = source;
  source.onopen = () => setConnected(true);
  source.onmessage = (event) => {
    if (!state.connected) setConnected(true);
    render(JSON.parse(event.data));
  };
  source.onerror = () => {
    setConnected(false);
    // EventSource retries by itself unless the server refused the stream (CLOSED).
    if (source.readyState === EventSource.CLOSED) {
      state.reconnectTimer = setTimeout(connect, RECONNECT_MS);
    }
  };
}

function start() {
  const input = $('#prefix');
  input.value = state.prefix;
  let typing = null;
  const apply = () => {
    if (input.value === state.prefix) return;
    state.prefix = input.value;
    const url = new URL(location.href);
    if (state.prefix === '') url.searchParams.delete('prefix');
    else url.searchParams.set('prefix', state.prefix);
    history.replaceState(null, '', url);
    connect();
  };
  input.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(apply, 300);
  });
  $('#filter').addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  setConnected(false);
  connect();
}

start();
