// Explore: the label browser (names, then values, from the label API)
// that builds a selector; the logs-volume histogram of a log query, split
// by a chosen label, from a `count_over_time` metric query; and the chart
// of a metric query.

import { h, fill, fmtInt } from './dom.js';
import { getJson } from './api.js';
import { barChart, lineChart } from './chart.js';
import { quote, selectorSpan } from './query.js';

const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
/** Bars of the volume histogram, about. */
const BARS = 60;
/** Points of a metric chart, about. */
const POINTS = 200;

/** Nanoseconds as the API takes them, exactly (ms * 1e6 is past 2^53). */
export const ns = (ms) => `${Math.round(ms)}000000`;

/** A step of whole seconds giving about `n` points over `spanMs`. */
export function stepFor(spanMs, n) {
  const want = spanMs / 1000 / n;
  return NICE_STEPS.find((s) => s >= want) ?? Math.ceil(want / 86400) * 86400;
}

/**
 * The bars of the volume histogram for [startMs, endMs]: their right
 * edges (each counts (t - step, t], Loki's window) ending at `endMs`, and
 * the step in ms. The first bar starts at or before `startMs`, exactly at
 * it when the span is a multiple of the step.
 */
export function barTimes(startMs, endMs, stepS) {
  const step = stepS * 1000;
  const n = Math.max(1, Math.ceil((endMs - startMs) / step));
  return { times: Array.from({ length: n }, (_, i) => endMs - (n - 1 - i) * step), step };
}

/** Loki's matrix as [{name, points: [[ms, value]]}], names from `by` or all labels. */
function series(result, by) {
  return result.map((s) => {
    const labels = Object.entries(s.metric || {});
    const name = by ? (s.metric?.[by] ?? `(no ${by})`) : labels.map(([k, v]) => `${k}=${quote(v)}`).join(', ') || 'value';
    return { name, points: s.values.map(([t, v]) => [Math.round(Number(t) * 1000), Number(v)]) };
  });
}

/** The selector the browser's choices make: {a="x", b=~"y|z"}. */
export function buildSelector(chosen) {
  const escape = (v) => v.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
  const parts = [];
  for (const [name, values] of chosen) {
    if (values.size === 1) parts.push(`${name}=${quote([...values][0])}`);
    else if (values.size > 1) parts.push(`${name}=~${quote([...values].map(escape).join('|'))}`);
  }
  return parts.length ? `{${parts.join(', ')}}` : '';
}

/** `q` with its selector replaced by `selector` (the pipeline kept). */
export function withSelector(q, selector) {
  const span = selectorSpan(q);
  if (span) return q.slice(0, span[0]) + selector + q.slice(span[1] + 1);
  const bare = /^\s*[A-Za-z0-9_][\w.-]*/.exec(q);
  const rest = bare && !/^\s*[A-Za-z_]\w*\s*\(/.test(q) ? q.slice(bare[0].length) : '';
  return selector + rest;
}

export class LabelBrowser {
  /**
   * @param {HTMLElement} el the panel
   * @param {(selector: string) => void} onUse
   */
  constructor(el, onUse) {
    this.el = el;
    this.onUse = onUse;
    this.chosen = new Map();
    this.names = h('div', { class: 'lb-names' });
    this.values = h('div', { class: 'lb-values' });
    this.filter = h('input', { type: 'search', placeholder: 'Filter values', class: 'lb-filter', oninput: () => this.showValues() });
    this.preview = h('code', { class: 'lb-preview' });
    this.current = null;
    this.valueList = [];
    fill(el,
      h('div', { class: 'lb-head' }, h('strong', { text: 'Labels' }), h('span', { class: 'muted', text: ' pick names, then values' })),
      this.names,
      h('div', { class: 'lb-valhead' }, this.filter),
      this.values,
      h('div', { class: 'lb-foot' }, this.preview,
        h('button', { type: 'button', class: 'primary', id: 'lb-use', onclick: () => this.use() }, 'Use selector'),
        h('button', { type: 'button', onclick: () => { this.chosen.clear(); this.update(); } }, 'Clear')));
  }

  /** Loads label names for the range. */
  async load(startMs, endMs) {
    const j = await getJson('/loki/api/v1/labels', { start: ns(startMs), end: ns(endMs) });
    this.range = [startMs, endMs];
    const names = (j.data || []).filter((n) => !n.startsWith('__'));
    fill(this.names, names.map((n) => h('button', {
      type: 'button', class: 'lb-name', 'data-name': n, onclick: () => this.pick(n),
    }, n)));
    if (!names.length) fill(this.names, h('span', { class: 'muted', text: 'No labels in this time range.' }));
    this.update();
    return names;
  }

  async pick(name) {
    this.current = name;
    for (const b of this.names.children) b.classList.toggle('on', b.dataset.name === name);
    fill(this.values, h('span', { class: 'muted', text: 'Loading…' }));
    const [s, e] = this.range;
    try {
      const j = await getJson(`/loki/api/v1/label/${encodeURIComponent(name)}/values`, { start: ns(s), end: ns(e) });
      this.valueList = j.data || [];
      this.showValues();
    } catch (err) {
      fill(this.values, h('span', { class: 'error-inline', text: err.message }));
    }
  }

  showValues() {
    const name = this.current;
    if (!name) return;
    const f = this.filter.value.toLowerCase();
    const set = this.chosen.get(name) ?? new Set();
    const shown = this.valueList.filter((v) => v.toLowerCase().includes(f)).slice(0, 500);
    fill(this.values, shown.map((v) => h('button', {
      type: 'button', class: set.has(v) ? 'lb-value on' : 'lb-value', 'data-value': v,
      onclick: (e) => {
        const s = this.chosen.get(name) ?? new Set();
        if (s.has(v)) s.delete(v); else s.add(v);
        this.chosen.set(name, s);
        e.currentTarget.classList.toggle('on', s.has(v));
        this.update();
      },
    }, v)));
    if (this.valueList.length > shown.length) this.values.append(h('span', { class: 'muted', text: ` … ${this.valueList.length - shown.length} more: filter` }));
  }

  update() {
    this.preview.textContent = buildSelector(this.chosen) || '(nothing chosen)';
  }

  use() {
    const sel = buildSelector(this.chosen);
    if (sel) this.onUse(sel);
  }
}

/**
 * The logs volume of the log query `q` over [startMs, endMs], split by
 * label `by` ('' for one series), drawn as stacked bars; resolves to the
 * total count and the span [from, to] the bars cover.
 */
export async function drawVolume(el, legendEl, { q, startMs, endMs, by, onZoom, signal }) {
  const stepS = stepFor(endMs - startMs, BARS);
  const { times, step } = barTimes(startMs, endMs, stepS);
  const inner = `count_over_time(${q} [${stepS}s])`;
  const metric = by ? `sum by (${by}) (${inner})` : `sum(${inner})`;
  const j = await getJson('/loki/api/v1/query_range', {
    query: metric, start: ns(times[0]), end: ns(times[times.length - 1]), step: `${stepS}s`,
  }, signal);
  const index = new Map(times.map((t, i) => [t, i]));
  const split = series(j.data?.result || [], by).map((s) => {
    const values = new Array(times.length).fill(0);
    for (const [t, v] of s.points) {
      const i = index.get(t);
      if (i !== undefined) values[i] = v;
    }
    return { name: s.name, values };
  }).sort((a, b) => a.name.localeCompare(b.name));
  barChart(el, legendEl, { times, step, series: split, onZoom });
  const svg = el.querySelector('svg');
  const from = times[0] - step;
  const to = times[times.length - 1];
  svg.dataset.from = String(from);
  svg.dataset.to = String(to);
  const total = split.reduce((a, s) => a + s.values.reduce((x, v) => x + v, 0), 0);
  svg.dataset.total = String(total);
  return { total, from, to, metric };
}

/** Draws the metric query `q` over [startMs, endMs]; resolves to the series count. */
export async function drawMetric(el, legendEl, tableEl, { q, startMs, endMs, onZoom, signal }) {
  const stepS = stepFor(endMs - startMs, POINTS);
  const j = await getJson('/loki/api/v1/query_range', { query: q, start: ns(startMs), end: ns(endMs), step: `${stepS}s` }, signal);
  const data = j.data || {};
  let result = data.result || [];
  if (data.resultType === 'vector') result = result.map((s) => ({ metric: s.metric, values: [s.value] }));
  const all = series(result, '');
  lineChart(el, legendEl, { start: startMs, end: endMs, series: all, onZoom });
  fill(tableEl,
    h('tr', {}, h('th', { text: 'series' }), h('th', { text: 'last' }), h('th', { text: 'max' }), h('th', { text: 'points' })),
    all.map((s) => {
      const vals = s.points.map((p) => p[1]);
      const last = vals.length ? vals[vals.length - 1] : NaN;
      return h('tr', {}, h('td', { text: s.name }), h('td', { text: fmtInt(last) }),
        h('td', { text: fmtInt(Math.max(...vals)) }), h('td', { text: String(vals.length) }));
    }));
  return all.length;
}
