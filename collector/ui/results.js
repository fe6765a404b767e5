// The result lines: one row each (time, labels, line), in a virtualised
// list. A label is a button that adds `=` or `!=` its value to the query;
// a row expands to show every header, the record's place
// (topic/partition/offset) and the whole line.

import { h, fill, fmtTime } from './dom.js';
import { renderAnsi } from './ansi.js';
import { VirtualList } from './vlist.js';

/** Characters of a line drawn in a collapsed row: more is never visible. */
const ROW_CHARS = 2000;
/** Characters of a line shown expanded before "show all". */
const OPEN_CHARS = 100_000;

const INTERNAL = 'logpost.';

function decodeBase64(b64) {
  try {
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  } catch {
    return '';
  }
}

/** Order of labels in a row: topic first, the long and alike ones last. */
const rank = (k) => (k === 'topic' ? 0 : k === 'host' ? 2 : k === 'path' ? 3 : 1);

/** A record of `/v1/query` as a row item. */
export function fromRecord(r) {
  const labels = [];
  if (r.labels) {
    for (const [k, v] of Object.entries(r.labels)) if (!k.startsWith(INTERNAL)) labels.push([k, String(v)]);
  } else {
    labels.push(['topic', r.topic]);
    for (const [k, v] of Object.entries(r.headers || {})) if (!k.startsWith(INTERNAL)) labels.push([k, String(v)]);
  }
  labels.sort((a, b) => rank(a[0]) - rank(b[0]));
  const binary = r.line === undefined && r.line_base64 !== undefined;
  return {
    ms: r.timestamp_ms,
    ns: r.timestamp_ns ?? null,
    labels,
    line: binary ? decodeBase64(r.line_base64) : (r.line ?? ''),
    binary,
    rec: r,
    open: false,
  };
}

/** A live-tail entry (Loki's stream labels, ns time as text) as a row item. */
export function fromTail(labels, ns, line) {
  const pairs = Object.entries(labels).filter(([k]) => !k.startsWith(INTERNAL)).map(([k, v]) => [k, String(v)]);
  const topic = pairs.findIndex(([k]) => k === 'topic');
  if (topic > 0) pairs.unshift(pairs.splice(topic, 1)[0]);
  return { ms: Math.floor(Number(ns) / 1e6), ns, labels: pairs, line, binary: false, rec: null, open: false };
}

export class Results {
  /**
   * @param {HTMLElement} scroller
   * @param {(name: string, op: string, value: string) => void} onMatcher
   */
  constructor(scroller, onMatcher) {
    this.items = [];
    this.onMatcher = onMatcher;
    this.list = new VirtualList(scroller, (item) => this.row(item));
    this.menu = h('div', { class: 'menu', hidden: true, role: 'menu' });
    document.body.append(this.menu);
    document.addEventListener('click', (e) => {
      if (!this.menu.contains(e.target)) this.menu.hidden = true;
    });
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') this.menu.hidden = true; });
  }

  /** Forgets every row. */
  reset() {
    this.menu.hidden = true;
    this.items = [];
    this.list.clear();
    this.list.setItems(this.items);
  }

  /** Adds rows at the end. */
  append(items) {
    for (const it of items) this.items.push(it);
    this.list.refresh();
  }

  /** Adds rows at the top (live tail, newest first), keeping at most `max`. */
  prepend(items, max) {
    this.items.unshift(...items);
    if (this.items.length > max) this.items.length = max;
    this.list.refresh();
  }

  get length() { return this.items.length; }

  chip(name, value) {
    return h('button', {
      class: 'chip',
      type: 'button',
      title: `${name}="${value}": filter for or out`,
      'data-label': name,
      'data-value': value,
      onclick: (e) => {
        e.stopPropagation();
        this.openMenu(e.currentTarget, name, value);
      },
    }, h('span', { class: 'chip-k', text: name }), '=', h('span', { class: 'chip-v', text: value }));
  }

  openMenu(anchor, name, value) {
    const pick = (op) => () => {
      this.menu.hidden = true;
      this.onMatcher(name, op, value);
    };
    fill(this.menu,
      h('button', { type: 'button', class: 'menu-eq', onclick: pick('=') }, `Only ${name} = `, h('b', { text: value })),
      h('button', { type: 'button', class: 'menu-ne', onclick: pick('!=') }, `Exclude ${name} = `, h('b', { text: value })));
    const r = anchor.getBoundingClientRect();
    this.menu.hidden = false;
    const w = this.menu.offsetWidth;
    this.menu.style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - w - 4))}px`;
    this.menu.style.top = `${r.bottom + 2}px`;
    this.menu.querySelector('button').focus();
  }

  row(item) {
    const line = h('span', { class: 'line' });
    renderAnsi(line, item.line.length > ROW_CHARS ? item.line.slice(0, ROW_CHARS) : item.line);
    const head = h('div', { class: 'row-head' },
      h('span', { class: 'ts', text: fmtTime(item.ms) }),
      h('span', { class: 'labels' }, item.labels.map(([k, v]) => this.chip(k, v))),
      line);
    const el = h('div', {
      class: item.open ? 'row open' : 'row',
      role: 'listitem',
      tabindex: '0',
      onclick: (e) => {
        if (e.target.closest('.detail') && !e.target.closest('.row-head')) return;
        this.list.toggle(item);
      },
      onkeydown: (e) => { if (e.key === 'Enter' && e.target === el) this.list.toggle(item); },
    }, head);
    if (item.open) el.append(this.detail(item));
    return el;
  }

  detail(item) {
    const full = h('pre', { class: 'full' });
    const long = item.line.length > OPEN_CHARS && !item.showAll;
    renderAnsi(full, long ? item.line.slice(0, OPEN_CHARS) : item.line);
    const rows = [];
    const add = (k, v) => rows.push(h('tr', {}, h('th', { text: k }), h('td', { text: v })));
    const r = item.rec;
    if (r) {
      add('topic', r.topic);
      add('partition', r.partition);
      add('offset', r.offset);
      add('timestamp', `${fmtTime(r.timestamp_ms)} (${r.timestamp_ns ?? r.timestamp_ms * 1e6} ns)`);
      if (r.stream !== undefined) add('stream', r.stream);
      if (r.key !== undefined) add('key', r.key);
      for (const [k, v] of Object.entries(r.headers || {})) add(`header ${k}`, v);
      if (r.labels) for (const [k, v] of Object.entries(r.labels)) add(`label ${k}`, v);
    } else {
      add('timestamp', `${fmtTime(item.ms)} (${item.ns} ns)`);
      for (const [k, v] of item.labels) add(`label ${k}`, v);
    }
    add('length', `${item.line.length} characters${item.binary ? ' (not UTF-8: invalid bytes shown as \uFFFD)' : ''}`);
    const parts = [full];
    if (long) {
      parts.push(h('button', {
        type: 'button',
        class: 'more',
        text: `Show all ${item.line.length} characters`,
        onclick: (e) => {
          e.stopPropagation();
          // Closed and opened again, so that the list measures the new height.
          item.showAll = true;
          this.list.toggle(item);
          this.list.toggle(item);
        },
      }));
    }
    parts.push(h('table', { class: 'headers' }, rows));
    return h('div', { class: 'detail' }, parts);
  }
}
