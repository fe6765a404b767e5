// The LogQL box and what the page does to a query's text: telling log
// from metric queries, adding a label matcher to the selector, and placing
// a parse error where the collector's message says it is.

import { h, fill } from './dom.js';
import { history } from './state.js';

/** Whether `q` is a metric query (a function or number first, not a selector). */
export function isMetric(q) {
  const t = q.trim();
  if (t.startsWith('{') || t === '') return false;
  if (/^[-+(0-9.]/.test(t) && !/^[0-9][\w.-]*\s*(\||$)/.test(t)) return true;
  return /^[A-Za-z_]\w*\s*(\(|by\b|without\b)/.test(t);
}

/** Index just past the string literal that starts at `i` ("..." or `...`). */
function skipString(q, i) {
  const quote = q[i];
  for (let j = i + 1; j < q.length; j++) {
    if (quote === '"' && q[j] === '\\') j++;
    else if (q[j] === quote) return j + 1;
  }
  return q.length;
}

/** [start, end] of the first `{...}` selector outside strings, or null. */
export function selectorSpan(q) {
  for (let i = 0; i < q.length; i++) {
    if (q[i] === '"' || q[i] === '`') { i = skipString(q, i) - 1; continue; }
    if (q[i] !== '{') continue;
    for (let j = i + 1; j < q.length; j++) {
      if (q[j] === '"' || q[j] === '`') { j = skipString(q, j) - 1; continue; }
      if (q[j] === '}') return [i, j];
    }
    return null;
  }
  return null;
}

/** A LogQL string literal holding `value`. */
export const quote = (value) => JSON.stringify(value);

/**
 * `q` with the matcher `name op "value"` added to its selector. A bare
 * topic name becomes `{topic="name", ...}`; an empty query gets a selector.
 */
export function addMatcher(q, name, op, value) {
  const m = `${name}${op}${quote(value)}`;
  if (!q.trim()) return `{${m}}`;
  const span = selectorSpan(q);
  if (span) {
    const [i, j] = span;
    const inner = q.slice(i + 1, j).trim();
    const parts = inner ? inner.split(/\s*,\s*/) : [];
    if (parts.includes(m)) return q;
    return `${q.slice(0, i + 1)}${inner ? `${inner}, ` : ''}${m}${q.slice(j)}`;
  }
  const bare = /^(\s*)([A-Za-z0-9_][\w.-]*)/.exec(q);
  if (bare && !isMetric(q)) {
    return `${bare[1]}{topic=${quote(bare[2])}, ${m}}${q.slice(bare[0].length)}`;
  }
  return q;
}

/** {line, col} (1-based) of "parse error at line L, col C: ...", or null. */
export function errorPosition(message) {
  const m = /at line (\d+), col (\d+)/.exec(message);
  return m ? { line: Number(m[1]), col: Number(m[2]) } : null;
}

/** UTF-16 offset in `q` of a 1-based line and column (columns count characters). */
export function offsetOf(q, line, col) {
  const lines = q.split('\n');
  let off = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
  const chars = Array.from(lines[Math.min(line, lines.length) - 1] ?? '');
  return off + chars.slice(0, col - 1).join('').length;
}

/**
 * The query box: Enter runs, Shift+Enter adds a line, ArrowUp/ArrowDown on
 * the first/last line walk the history, and parse errors are shown under
 * the text with a caret at the column the collector names.
 */
export class QueryBox {
  constructor(textarea, errorEl, onRun) {
    this.box = textarea;
    this.errorEl = errorEl;
    this.onRun = onRun;
    this.walk = -1;
    textarea.addEventListener('keydown', (e) => this.key(e));
    textarea.addEventListener('input', () => { this.walk = -1; this.fit(); });
  }

  get value() { return this.box.value; }

  set value(v) {
    this.box.value = v;
    this.fit();
  }

  fit() {
    this.box.rows = Math.min(8, Math.max(1, this.box.value.split('\n').length));
  }

  key(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.onRun();
      return;
    }
    const before = this.box.value.slice(0, this.box.selectionStart);
    const after = this.box.value.slice(this.box.selectionEnd);
    const past = history();
    if (e.key === 'ArrowUp' && !before.includes('\n') && this.walk + 1 < past.length) {
      e.preventDefault();
      this.walk++;
      this.value = past[this.walk];
    } else if (e.key === 'ArrowDown' && !after.includes('\n') && this.walk >= 0) {
      e.preventDefault();
      this.walk--;
      this.value = this.walk >= 0 ? past[this.walk] : '';
    } else if (e.key === 'Escape') {
      this.box.blur();
    }
  }

  /** Shows `message`; a parse error gets the query line with a caret under its column. */
  showError(message) {
    const pos = errorPosition(message);
    const parts = [h('div', { class: 'err-text', text: message })];
    if (pos) {
      const line = this.box.value.split('\n')[pos.line - 1] ?? '';
      const caret = `${' '.repeat(Math.max(0, Array.from(line).slice(0, pos.col - 1).length))}^`;
      parts.push(h('pre', { class: 'err-caret', text: `${line}\n${caret}` }));
      const at = offsetOf(this.box.value, pos.line, pos.col);
      this.box.focus();
      this.box.setSelectionRange(at, at);
    }
    fill(this.errorEl, parts);
    this.errorEl.hidden = false;
    this.box.classList.add('bad');
  }

  clearError() {
    this.errorEl.hidden = true;
    fill(this.errorEl);
    this.box.classList.remove('bad');
  }
}
