// SVG charts: the logs-volume histogram (stacked bars, one colour per
// value of the split label) and metric queries' time series (lines).
// Dragging across either selects a time range to zoom into.

import { h, fill, fmtTick, fmtTime, fmtInt } from './dom.js';

const PAD = { left: 44, right: 8, top: 8, bottom: 20 };
const COLOURS = 10;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtValue(v) {
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** Axes, grid and the drag-to-zoom overlay shared by both charts. */
function frame(svg, width, height, t0, t1, yMax, onZoom) {
  const x = (t) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - PAD.left - PAD.right);
  const y = (v) => height - PAD.bottom - (v / yMax) * (height - PAD.top - PAD.bottom);
  for (const f of [0, 0.5, 1]) {
    const v = yMax * f;
    svg.append(h('svg:line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }));
    svg.append(h('svg:text', { class: 'axis', x: PAD.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, fmtValue(v)));
  }
  const ticks = Math.max(2, Math.floor((width - PAD.left) / 90));
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) * i) / ticks;
    svg.append(h('svg:text', {
      class: 'axis', x: x(t), y: height - 4, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle',
    }, fmtTick(t, t1 - t0)));
  }
  const sel = h('svg:rect', { class: 'zoom-sel', x: 0, y: PAD.top, width: 0, height: height - PAD.top - PAD.bottom, visibility: 'hidden' });
  svg.append(sel);
  let from = null;
  const px = (e) => {
    const r = svg.getBoundingClientRect();
    return Math.max(PAD.left, Math.min(width - PAD.right, e.clientX - r.left));
  };
  const time = (p) => t0 + ((p - PAD.left) / (width - PAD.left - PAD.right)) * (t1 - t0);
  svg.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    from = px(e);
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener('pointermove', (e) => {
    if (from === null) return;
    const to = px(e);
    sel.setAttribute('x', Math.min(from, to));
    sel.setAttribute('width', Math.abs(to - from));
    sel.setAttribute('visibility', 'visible');
  });
  svg.addEventListener('pointerup', (e) => {
    if (from === null) return;
    const to = px(e);
    const a = from;
    from = null;
    sel.setAttribute('visibility', 'hidden');
    if (Math.abs(to - a) >= 4) onZoom(Math.round(time(Math.min(a, to))), Math.round(time(Math.max(a, to))));
  });
  return { x, y };
}

function legend(el, series, totals) {
  fill(el, series.map((s, i) => h('span', { class: 'legend-item' },
    h('span', { class: `swatch s${i % COLOURS}` }),
    `${s.name} `,
    totals ? h('span', { class: 'muted', text: `(${fmtInt(totals[i])})` }) : null)));
}

/**
 * Stacked bars. `times` are the bars' right edges (a bar counts
 * (t - step, t]); `series` = [{name, values}] aligned with `times`.
 */
export function barChart(el, legendEl, { times, step, series, onZoom }) {
  const width = Math.max(200, el.clientWidth);
  const height = 120;
  const svg = h('svg:svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const t0 = times.length ? times[0] - step : 0;
  const t1 = times.length ? times[times.length - 1] : 1;
  const stacks = times.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const { x, y } = frame(svg, width, height, t0, t1, niceMax(Math.max(0, ...stacks)), onZoom);
  const bars = h('svg:g', { class: 'bars' });
  times.forEach((t, i) => {
    let base = 0;
    const left = x(t - step) + 0.5;
    const w = Math.max(1, x(t) - x(t - step) - 1);
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      if (!v) return;
      const rect = h('svg:rect', {
        class: `bar s${j % COLOURS}`, x: left, width: w, y: y(base + v), height: Math.max(0.5, y(base) - y(base + v)),
        'data-count': v, 'data-series': s.name, 'data-t': t,
      }, h('svg:title', {}, `${s.name}: ${fmtInt(v)} lines, ${fmtTime(t - step)} to ${fmtTime(t)}`));
      bars.append(rect);
      base += v;
    });
  });
  svg.insertBefore(bars, svg.querySelector('.zoom-sel'));
  fill(el, svg);
  legend(legendEl, series, series.map((s) => s.values.reduce((a, v) => a + (v || 0), 0)));
}

/** Lines, one per series: `series` = [{name, points: [[ms, value]]}]. */
export function lineChart(el, legendEl, { start, end, series, onZoom }) {
  const width = Math.max(200, el.clientWidth);
  const height = 220;
  const svg = h('svg:svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const all = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const { x, y } = frame(svg, width, height, start, end, niceMax(Math.max(0, ...all)), onZoom);
  const g = h('svg:g', { class: 'lines' });
  series.forEach((s, j) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1])).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    g.append(h('svg:polyline', { class: `series s${j % COLOURS}`, points: pts.join(' '), 'data-series': s.name },
      h('svg:title', {}, s.name)));
    // A line of one or two points is hard to see: mark them.
    if (pts.length < 3) {
      for (const p of pts) {
        const [cx, cy] = p.split(',');
        g.append(h('svg:circle', { class: `dot s${j % COLOURS}`, cx, cy, r: 3 }, h('svg:title', {}, s.name)));
      }
    }
  });
  svg.insertBefore(g, svg.querySelector('.zoom-sel'));
  fill(el, svg);
  legend(legendEl, series, null);
}
