// Calls to the collector's APIs. With tokens configured, a 401 asks for a
// token once (the dialog in app.js), keeps it for this tab only
// (sessionStorage) and retries; a 401/403 the user cannot fix is shown in
// words.

const TOKEN_KEY = 'logpost.token';

/** The token in use in this tab, or ''. */
export function token() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  try {
    if (t) window.sessionStorage.setItem(TOKEN_KEY, t);
    else window.sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token is then asked for again on reload.
  }
}

/** An API failure, with the collector's own words. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What a status means, in words, before the collector's message. */
export function describeStatus(status) {
  switch (status) {
    case 401: return 'This collector needs a valid token (401)';
    case 403: return 'This token is not allowed to read here (403)';
    case 404: return 'Not found (404)';
    case 429: return 'The collector is busy (429)';
    case 503: return 'The collector is unavailable (503)';
    default: return status >= 500 ? `The collector failed (${status})` : `Bad request (${status})`;
  }
}

async function errorOf(resp) {
  let text = '';
  try {
    text = (await resp.text()).trim();
  } catch {
    // Body lost: the status alone has to do.
  }
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === 'string') text = j.error;
  } catch {
    // Plain text (Loki's errors): as is.
  }
  return new ApiError(resp.status, text || resp.statusText);
}

let askToken = null;
let pendingAsk = null;

/**
 * Sets the function called on a 401: it gets the refusal and resolves to
 * true once the user gave a (new) token, false if they gave up.
 */
export function onTokenNeeded(f) {
  askToken = f;
}

function ask(err) {
  if (!askToken) return Promise.resolve(false);
  // Parallel requests refused together share one prompt.
  pendingAsk ??= askToken(err).finally(() => { pendingAsk = null; });
  return pendingAsk;
}

function url(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

/** GET `path`; the Response once it is a 2xx, asking for a token on 401. */
export async function request(path, params, signal) {
  for (;;) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    let resp;
    try {
      resp = await fetch(url(path, params), { headers, signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, `The collector cannot be reached: ${e.message}`);
    }
    if (resp.ok) return resp;
    const err = await errorOf(resp);
    if (resp.status === 401 && (await ask(err))) continue;
    throw err;
  }
}

/** GET `path` as JSON. */
export async function getJson(path, params, signal) {
  const resp = await request(path, params, signal);
  return resp.json();
}

/**
 * GET an NDJSON stream, calling `onRecords(array)` with each chunk's
 * records as they arrive (the collector sends a chunk every 64 KiB or
 * 100 ms). An `{"error": ...}` line mid-stream becomes an ApiError.
 */
export async function streamNdjson(path, params, onRecords, signal) {
  const resp = await request(path, params, signal);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let rest = '';
  for (;;) {
    const { done, value } = await reader.read();
    const text = rest + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
    const lines = text.split('\n');
    rest = done ? '' : lines.pop();
    const records = [];
    for (const line of lines) {
      if (!line) continue;
      const r = JSON.parse(line);
      if (r.error !== undefined && r.offset === undefined) throw new ApiError(500, r.error);
      records.push(r);
    }
    if (records.length) onRecords(records);
    if (done) return;
  }
}

/** base64url without padding, of UTF-8 text. */
function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * A WebSocket to `path`. Browsers cannot set Authorization on one, so the
 * token travels as a subprotocol beside `logpost` (the collector answers
 * with `logpost`; docs/ui.md).
 */
export function socket(path, params) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const t = token();
  const protocols = t ? ['logpost', `logpost.bearer.${base64url(t)}`] : [];
  return new WebSocket(`${scheme}//${window.location.host}${url(path, params)}`, protocols);
}

/** Checks that the current token may read (a 401 prompts, as anywhere). */
export async function probe() {
  await request('/loki/api/v1/labels', { start: String(Date.now() * 1e6 - 6e10) });
}
