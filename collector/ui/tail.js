// Live tail over the collector's WebSocket (`/loki/api/v1/tail`): entries
// arrive newest last in each message; the page shows them newest first.
// The connection is reopened after a drop, from just after the last entry
// seen, so nothing is repeated or skipped.

import { socket } from './api.js';
import { fromTail } from './results.js';

const RETRY_MS = 2000;

export class Tail {
  /**
   * @param {(items: object[]) => void} onEntries newest first
   * @param {(text: string, ok: boolean) => void} onState
   */
  constructor(onEntries, onState) {
    this.onEntries = onEntries;
    this.onState = onState;
    this.ws = null;
    this.timer = 0;
    this.wanted = false;
  }

  /** Follows `query` from `startNs` (text), with `limit` entries of backlog. */
  start(query, startNs, limit) {
    this.stop();
    this.wanted = true;
    this.query = query;
    this.limit = limit;
    this.next = startNs;
    this.open();
  }

  open() {
    const ws = socket('/loki/api/v1/tail', { query: this.query, start: this.next, limit: this.limit });
    this.ws = ws;
    this.onState('connecting…', true);
    ws.onopen = () => this.onState('following', true);
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      const items = [];
      for (const s of msg.streams || []) {
        for (const [t, line] of s.values || []) items.push(fromTail(s.stream || {}, t, line));
      }
      if (!items.length) return;
      // Newest first; entries of one millisecond keep their stored order, reversed.
      items.reverse();
      items.sort((a, b) => (BigInt(b.ns) > BigInt(a.ns) ? 1 : BigInt(b.ns) < BigInt(a.ns) ? -1 : 0));
      this.next = (BigInt(items[0].ns) + 1n).toString();
      this.onEntries(items);
    };
    ws.onclose = () => {
      if (this.ws !== ws || !this.wanted) return;
      this.onState('disconnected; reconnecting…', false);
      this.timer = window.setTimeout(() => this.open(), RETRY_MS);
    };
  }

  stop() {
    this.wanted = false;
    window.clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
  }
}
