// The page: wires the query bar, the views and the URL together. What
// each part does is in its own module (docs/ui.md lists them).

import { $, h, fill, fmtInt } from './dom.js';
import { ApiError, describeStatus, onTokenNeeded, request, setToken, streamNdjson, token } from './api.js';
import { DEFAULTS, MAX_LIMIT, RANGES, history, isRelative, readState, remember, resolveRange, writeState } from './state.js';
import { QueryBox, addMatcher, isMetric } from './query.js';
import { Results, fromRecord } from './results.js';
import { LabelBrowser, drawMetric, drawVolume, ns, withSelector } from './explore.js';
import { Tail } from './tail.js';
import { loadStatus } from './status.js';

/** Lines the live view keeps (older ones leave the bottom). */
const MAX_LIVE = 10_000;
/** Backlog the live tail starts with. */
const LIVE_BACKLOG = 100;

let state = readState();
let running = null; // AbortController of the search in progress

const box = new QueryBox($('q'), $('error'), () => run());
const results = new Results($('results'), (name, op, value) => {
  box.value = addMatcher(box.value, name, op, value);
  run();
});
const browser = new LabelBrowser($('browser'), (selector) => {
  box.value = withSelector(box.value, selector);
  run();
});
const live = { paused: false, pending: [], fresh: 0 };
const tail = new Tail(onLive, (text, ok) => {
  $('live-state').textContent = text;
  $('live-state').classList.toggle('error-inline', !ok);
});

// ---- controls <-> state ----

for (const [key, label] of RANGES) $('range').append(h('option', { value: `now-${key}`, text: label }));
$('range').append(h('option', { value: 'custom', text: 'Custom range…' }));

const pad = (n) => String(n).padStart(2, '0');
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function showControls(s) {
  box.value = s.q;
  const relative = isRelative(s) && RANGES.some(([k]) => `now-${k}` === s.from);
  $('range').value = relative ? s.from : 'custom';
  $('custom').hidden = relative;
  if (!relative) {
    const [a, b] = resolveRange(s);
    $('from').value = toLocalInput(a);
    $('to').value = toLocalInput(b);
  }
  $('dir').value = s.dir;
  $('limit').value = String(s.limit);
  $('live').setAttribute('aria-pressed', String(s.live));
  $('live').classList.toggle('on', s.live);
  if (![...$('by').options].some((o) => o.value === s.by)) $('by').append(h('option', { value: s.by, text: s.by }));
  $('by').value = s.by;
}

function readControls() {
  const s = { ...state, q: box.value, dir: $('dir').value };
  const limit = Number.parseInt($('limit').value, 10);
  s.limit = Number.isFinite(limit) && limit > 0 ? Math.min(limit, MAX_LIMIT) : DEFAULTS.limit;
  if ($('range').value === 'custom') {
    const a = new Date($('from').value).getTime();
    const b = new Date($('to').value).getTime();
    if (Number.isFinite(a) && Number.isFinite(b)) {
      // Keep exact bounds (a zoom's milliseconds) unless the inputs changed.
      const [oldA, oldB] = resolveRange(state);
      s.from = toLocalInput(oldA) === $('from').value ? String(oldA) : String(a);
      s.to = toLocalInput(oldB) === $('to').value ? String(oldB) : String(b);
    }
  } else {
    s.from = $('range').value;
    s.to = 'now';
  }
  s.by = $('by').value;
  return s;
}

$('range').addEventListener('change', () => {
  const custom = $('range').value === 'custom';
  $('custom').hidden = !custom;
  if (custom) {
    const [a, b] = resolveRange(state);
    $('from').value = toLocalInput(a);
    $('to').value = toLocalInput(b);
  } else {
    run();
  }
});
$('bar').addEventListener('submit', (e) => { e.preventDefault(); run(); });
$('live').addEventListener('click', () => {
  state = { ...readControls(), live: !state.live };
  go();
});
$('by').addEventListener('change', () => {
  state = readControls();
  writeState(state, true);
  if (state.q.trim() && !isMetric(state.q)) volume(state.q.trim(), ...resolveRange(state), running?.signal);
});
$('labels-btn').addEventListener('click', () => toggleBrowser());
function toggleBrowser(open = $('browser').hidden) {
  $('browser').hidden = !open;
  $('labels-btn').setAttribute('aria-expanded', String(open));
  if (open) browser.load(...resolveRange(readControls())).catch((e) => fillBy([], e));
}

// ---- history menu ----

$('hist-btn').addEventListener('click', (e) => {
  e.stopPropagation();
  const menu = $('hist-menu');
  if (!menu.hidden) { menu.hidden = true; return; }
  const past = history();
  fill(menu, past.length
    ? past.map((q) => h('button', { type: 'button', text: q, onclick: () => { menu.hidden = true; box.value = q; run(); } }))
    : h('span', { class: 'muted', text: 'No queries yet.' }));
  menu.hidden = false;
});
document.addEventListener('click', (e) => {
  if (!$('hist-menu').contains(e.target)) $('hist-menu').hidden = true;
});

// ---- keyboard ----

document.addEventListener('keydown', (e) => {
  const typing = e.target.closest?.('input, textarea, select, [contenteditable]');
  if ((e.key === '/' && !typing) || (e.key === 'k' && (e.ctrlKey || e.metaKey))) {
    e.preventDefault();
    if (state.view !== 'search') { state = { ...state, view: 'search' }; go(); }
    box.box.focus();
    box.box.select();
  }
});

// ---- views and navigation ----

for (const tab of document.querySelectorAll('.tab')) {
  tab.addEventListener('click', (e) => {
    e.preventDefault();
    state = { ...readControls(), view: tab.dataset.view };
    go();
  });
}
window.addEventListener('popstate', () => {
  state = readState();
  showControls(state);
  execute();
});

/** Runs what the controls say, as a new history entry. */
function run() {
  state = { ...readControls(), view: 'search' };
  go();
}

function go() {
  remember(state.q);
  writeState(state);
  showControls(state);
  execute();
}

function summary(text, data = {}) {
  const el = $('summary');
  el.textContent = text;
  for (const k of Object.keys(el.dataset)) delete el.dataset[k];
  Object.assign(el.dataset, data);
}

function showError(e) {
  if (e.name === 'AbortError') return;
  const msg = e instanceof ApiError && e.status !== 400 ? `${describeStatus(e.status)}: ${e.message}` : e.message;
  box.showError(msg);
  summary('', { failed: '1' });
}

async function execute() {
  running?.abort();
  const ctl = new AbortController();
  running = ctl;
  tail.stop();
  box.clearError();
  const status = state.view === 'status';
  $('search-view').hidden = status;
  $('status-view').hidden = !status;
  for (const t of document.querySelectorAll('.tab')) t.classList.toggle('on', t.dataset.view === state.view);
  $('tab-status').href = `?view=status`;
  if (status) {
    $('status-error').hidden = true;
    loadStatus($('topics'), $('groups'), ctl.signal).catch((e) => {
      if (e.name === 'AbortError') return;
      $('status-error').hidden = false;
      $('status-error').textContent = e instanceof ApiError ? `${describeStatus(e.status)}: ${e.message}` : e.message;
    });
    return;
  }
  const q = state.q.trim();
  const [startMs, endMs] = resolveRange(state);
  $('live-bar').hidden = !state.live;
  if (!q) {
    results.reset();
    $('volume-panel').hidden = true;
    $('metric-panel').hidden = true;
    summary('Type a LogQL query (press / to focus) or pick labels.');
    toggleBrowser(true);
    return;
  }
  if (!$('browser').hidden) browser.load(startMs, endMs).then(fillBy).catch(() => {});
  else labelNames(startMs, endMs);
  if (isMetric(q)) {
    results.reset();
    $('volume-panel').hidden = true;
    $('metric-panel').hidden = false;
    summary('Running metric query…');
    try {
      const n = await drawMetric($('metric'), $('metric-legend'), $('metric-table'), { q, startMs, endMs, onZoom: zoom, signal: ctl.signal });
      if (!ctl.signal.aborted) summary(`${n} series`, { done: '1', series: String(n) });
    } catch (e) {
      if (!ctl.signal.aborted) showError(e);
    }
    return;
  }
  $('metric-panel').hidden = true;
  $('volume-panel').hidden = false;
  volume(q, startMs, endMs, ctl.signal);
  if (state.live) startLive(q, startMs, ctl);
  else search(q, startMs, endMs, ctl);
}

async function labelNames(startMs, endMs) {
  try {
    const j = await (await request('/loki/api/v1/labels', { start: ns(startMs), end: ns(endMs) })).json();
    fillBy((j.data || []).filter((n) => !n.startsWith('__')));
  } catch {
    // The volume and search report the same problem more usefully.
  }
}

function fillBy(names) {
  const sel = $('by');
  const keep = [state.by, ...names].filter((v, i, a) => v && a.indexOf(v) === i);
  fill(sel, h('option', { value: '', text: '(nothing)' }), keep.map((n) => h('option', { value: n, text: n })));
  sel.value = state.by;
}

async function volume(q, startMs, endMs, signal) {
  $('volume-note').textContent = 'loading…';
  try {
    const v = await drawVolume($('volume'), $('volume-legend'), { q, startMs, endMs, by: state.by, onZoom: zoom, signal });
    $('volume-note').textContent = `${fmtInt(v.total)} lines in range · drag to zoom`;
  } catch (e) {
    if (e.name === 'AbortError') return;
    fill($('volume'));
    fill($('volume-legend'));
    $('volume-note').textContent = e.status === 400 ? '' : e.message;
  }
}

function zoom(a, b) {
  state = { ...readControls(), from: String(a), to: String(b), live: false };
  go();
}

async function search(q, startMs, endMs, ctl) {
  results.reset();
  summary('Searching…', { running: '1' });
  const t0 = performance.now();
  let first = null;
  let got = [];
  let frame = 0;
  const flush = () => {
    frame = 0;
    if (ctl.signal.aborted) return;
    results.append(got);
    got = [];
    summary(`${fmtInt(results.length)} lines so far…`, { running: '1', count: String(results.length) });
  };
  try {
    await streamNdjson('/v1/query', {
      query: q, start: ns(startMs), end: ns(endMs), limit: state.limit, direction: state.dir,
    }, (records) => {
      if (ctl.signal.aborted) return;
      if (first === null) first = performance.now() - t0;
      for (const r of records) got.push(fromRecord(r));
      frame ||= requestAnimationFrame(flush);
    }, ctl.signal);
    if (ctl.signal.aborted) return;
    cancelAnimationFrame(frame);
    flush();
    const all = performance.now() - t0;
    const n = results.length;
    const more = n >= state.limit ? ` (the limit: raise it for more)` : '';
    summary(`${fmtInt(n)} line${n === 1 ? '' : 's'}${more} · first in ${Math.round(first ?? all)} ms, all in ${Math.round(all)} ms`,
      { done: '1', count: String(n), firstMs: String(Math.round(first ?? all)), allMs: String(Math.round(all)) });
  } catch (e) {
    if (!ctl.signal.aborted) showError(e);
  }
}

// ---- live tail ----

async function startLive(q, startMs, ctl) {
  results.reset();
  Object.assign(live, { paused: false, pending: [], fresh: 0 });
  $('pause').textContent = 'Pause';
  $('newer').hidden = true;
  summary('Live: waiting for lines…', { live: '1', count: '0' });
  try {
    // The WebSocket cannot show why it was refused: check the query and
    // the token over HTTP first.
    const resp = await request('/v1/query', { query: q, limit: 1, start: ns(Date.now()) }, ctl.signal);
    await resp.body?.cancel();
  } catch (e) {
    if (!ctl.signal.aborted) showError(e);
    return;
  }
  if (!ctl.signal.aborted) tail.start(q, ns(startMs), LIVE_BACKLOG);
}

function onLive(items) {
  const away = $('results').scrollTop > 4;
  if (live.paused || away) {
    live.pending = items.concat(live.pending).slice(0, MAX_LIVE);
    live.fresh += items.length;
    $('newer').hidden = false;
    $('newer').textContent = `${fmtInt(live.fresh)} new line${live.fresh === 1 ? '' : 's'}`;
    $('newer').dataset.count = String(live.fresh);
  } else {
    results.prepend(items, MAX_LIVE);
  }
  summary(`Live: ${fmtInt(results.length)} lines shown${live.paused ? ' (paused)' : ''}`, { live: '1', count: String(results.length) });
}

function showNewer() {
  results.prepend(live.pending, MAX_LIVE);
  live.pending = [];
  live.fresh = 0;
  $('newer').hidden = true;
  $('newer').dataset.count = '0';
  results.list.scrollTo(0);
  summary(`Live: ${fmtInt(results.length)} lines shown`, { live: '1', count: String(results.length) });
}

$('pause').addEventListener('click', () => {
  live.paused = !live.paused;
  $('pause').textContent = live.paused ? 'Resume' : 'Pause';
  $('pause').setAttribute('aria-pressed', String(live.paused));
  if (!live.paused) showNewer();
  else summary(`Live: ${fmtInt(results.length)} lines shown (paused)`, { live: '1', count: String(results.length), paused: '1' });
});
$('newer').addEventListener('click', () => {
  live.paused = false;
  $('pause').textContent = 'Pause';
  showNewer();
});

// ---- token ----

function showForget() {
  $('forget').hidden = !token();
}
$('forget').addEventListener('click', () => {
  setToken('');
  showForget();
  execute();
});

onTokenNeeded((err) => new Promise((resolve) => {
  const dialog = $('token-dialog');
  const had = token();
  $('token-why').textContent = had
    ? `The collector refused this token: ${err.message} (${err.status}).`
    : `This collector asks for a token: ${err.message}`;
  $('token-why').className = had ? 'error-inline' : '';
  $('token-input').value = '';
  const done = (ok) => {
    $('token-form').onsubmit = null;
    $('token-cancel').onclick = null;
    dialog.oncancel = null;
    if (dialog.open) dialog.close();
    showForget();
    resolve(ok);
  };
  $('token-form').onsubmit = (e) => {
    e.preventDefault();
    const t = $('token-input').value.trim();
    if (!t) return;
    setToken(t);
    done(true);
  };
  $('token-cancel').onclick = () => { setToken(''); done(false); };
  dialog.oncancel = () => { setToken(''); done(false); };
  if (!dialog.open) dialog.showModal();
  $('token-input').focus();
}));

// ---- start ----

let resizeTimer = 0;
window.addEventListener('resize', () => {
  window.clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => {
    if (state.view === 'search' && state.q.trim() && !state.live) {
      const [a, b] = resolveRange(state);
      if (isMetric(state.q)) drawMetric($('metric'), $('metric-legend'), $('metric-table'), { q: state.q.trim(), startMs: a, endMs: b, onZoom: zoom }).catch(() => {});
      else volume(state.q.trim(), a, b);
    }
  }, 200);
});

showForget();
showControls(state);
execute();
