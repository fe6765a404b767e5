// The page's state lives in the URL (?q=...&from=now-1h&to=now&...), so a
// search can be bookmarked and shared and the back button works: every run
// pushes a history entry, and popstate restores and reruns it.

/** Relative ranges the picker offers: label and milliseconds. */
export const RANGES = [
  ['5m', 'Last 5 minutes', 300_000],
  ['15m', 'Last 15 minutes', 900_000],
  ['1h', 'Last hour', 3_600_000],
  ['6h', 'Last 6 hours', 21_600_000],
  ['24h', 'Last 24 hours', 86_400_000],
  ['2d', 'Last 2 days', 172_800_000],
  ['7d', 'Last 7 days', 604_800_000],
];

export const DEFAULTS = {
  view: 'search',
  q: '',
  from: 'now-1h',
  to: 'now',
  dir: 'backward',
  limit: 1000,
  live: false,
  by: 'source',
};

/** Most results one search asks for (the 100,000-line case and some room). */
export const MAX_LIMIT = 200_000;

/** The state the current URL describes, defaults filled in. */
export function readState(search = window.location.search) {
  const p = new URLSearchParams(search);
  const s = { ...DEFAULTS };
  if (p.get('view') === 'status') s.view = 'status';
  if (p.has('q')) s.q = p.get('q');
  if (p.has('from') && parseTime(p.get('from'), 0) !== null) s.from = p.get('from');
  if (p.has('to') && parseTime(p.get('to'), 0) !== null) s.to = p.get('to');
  if (p.get('dir') === 'forward') s.dir = 'forward';
  const limit = Number.parseInt(p.get('limit') ?? '', 10);
  if (Number.isFinite(limit) && limit > 0) s.limit = Math.min(limit, MAX_LIMIT);
  s.live = p.get('live') === '1';
  if (p.has('by')) s.by = p.get('by');
  return s;
}

/** The query string for `s`: only what differs from the defaults. */
export function encodeState(s) {
  const p = new URLSearchParams();
  for (const k of Object.keys(DEFAULTS)) {
    const v = s[k];
    if (v === DEFAULTS[k] || v === undefined) continue;
    p.set(k, k === 'live' ? (v ? '1' : '0') : String(v));
  }
  const text = p.toString();
  return text ? `?${text}` : window.location.pathname;
}

/** Records `s` in the URL: a new history entry if it changed, unless `replace`. */
export function writeState(s, replace = false) {
  const url = encodeState(s);
  if (url === window.location.search || (url === window.location.pathname && !window.location.search)) return;
  if (replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
}

const UNITS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A time as milliseconds: `now`, `now-15m`, epoch milliseconds, or an ISO
 * date; `null` when it is none of these.
 */
export function parseTime(text, now = Date.now()) {
  const t = String(text).trim();
  if (t === 'now') return now;
  const rel = /^now-(\d+)([smhdw])$/.exec(t);
  if (rel) return now - Number(rel[1]) * UNITS[rel[2]];
  if (/^\d{10,16}$/.test(t)) return Number(t);
  const iso = Date.parse(t);
  return Number.isNaN(iso) ? null : iso;
}

/** [startMs, endMs] of the state's range, resolved against `now`. */
export function resolveRange(s, now = Date.now()) {
  let start = parseTime(s.from, now) ?? now - 3_600_000;
  let end = parseTime(s.to, now) ?? now;
  if (end < start) [start, end] = [end, start];
  return [start, end];
}

/** Whether the range follows the clock (`now-…` to `now`). */
export const isRelative = (s) => s.to === 'now' && s.from.startsWith('now-');

/** The history of queries run, newest first (this browser only). */
export function history() {
  try {
    const h = JSON.parse(window.localStorage.getItem('logpost.history') ?? '[]');
    return Array.isArray(h) ? h.filter((x) => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** Adds `q` to the front of the history (50 kept, no repeats). */
export function remember(q) {
  if (!q.trim()) return;
  const h = [q, ...history().filter((x) => x !== q)].slice(0, 50);
  try {
    window.localStorage.setItem('logpost.history', JSON.stringify(h));
  } catch {
    // Storage full or disabled: history is a convenience only.
  }
}
