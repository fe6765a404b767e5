// A virtualised list: only the rows in view (and a few around) exist in
// the DOM, so 100,000 results scroll like 100. Rows have one height (the
// CSS variable --row-h, which the narrow layout doubles) except expanded
// ones, whose measured heights are kept aside; positions are computed from
// those few exceptions.

const OVERSCAN = 8;

export class VirtualList {
  /**
   * @param {HTMLElement} scroller the scrolling element
   * @param {(item: any, index: number) => HTMLElement} render builds one row
   */
  constructor(scroller, render) {
    this.scroller = scroller;
    this.render = render;
    this.items = [];
    this.rows = new Map(); // item -> element in the DOM
    this.open = []; // expanded items: {item, height}
    this.spacer = document.createElement('div');
    this.spacer.className = 'vl-spacer';
    scroller.append(this.spacer);
    this.measure();
    this.frame = 0;
    scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    window.addEventListener('resize', () => { this.measure(); this.refresh(); });
  }

  measure() {
    const v = Number.parseFloat(getComputedStyle(this.scroller).getPropertyValue('--row-h'));
    this.rowH = Number.isFinite(v) && v > 0 ? v : 22;
  }

  /** Shows `items` (kept by reference: append to it, then call refresh). */
  setItems(items) {
    this.items = items;
    this.open = this.open.filter((o) => o.item.open);
    this.refresh();
  }

  /** Redraws after items were added or changed. */
  refresh() {
    this.reindex();
    this.spacer.style.height = `${this.offsetOf(this.items.length)}px`;
    this.draw();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  reindex() {
    for (const o of this.open) o.index = this.items.indexOf(o.item);
    this.open = this.open.filter((o) => o.index >= 0).sort((a, b) => a.index - b.index);
  }

  offsetOf(i) {
    let y = i * this.rowH;
    for (const o of this.open) {
      if (o.index >= i) break;
      y += o.height - this.rowH;
    }
    return y;
  }

  indexAt(y) {
    let extra = 0;
    for (const o of this.open) {
      const top = o.index * this.rowH + extra;
      if (y < top) break;
      if (y < top + o.height) return o.index;
      extra += o.height - this.rowH;
    }
    return Math.max(0, Math.floor((y - extra) / this.rowH));
  }

  draw() {
    const top = this.scroller.scrollTop;
    const first = Math.max(0, this.indexAt(top) - OVERSCAN);
    const last = Math.min(this.items.length - 1, this.indexAt(top + this.scroller.clientHeight) + OVERSCAN);
    const keep = new Set();
    for (let i = first; i <= last; i++) {
      const item = this.items[i];
      keep.add(item);
      let el = this.rows.get(item);
      if (!el) {
        el = this.render(item, i);
        el.classList.add('vl-row');
        this.rows.set(item, el);
        this.scroller.append(el);
      }
      el.dataset.index = String(i);
      el.style.transform = `translateY(${this.offsetOf(i)}px)`;
    }
    for (const [item, el] of this.rows) {
      if (!keep.has(item)) {
        el.remove();
        this.rows.delete(item);
      }
    }
  }

  /** Expands or collapses `item`'s row (the renderer reads `item.open`). */
  toggle(item) {
    const el = this.rows.get(item);
    el?.remove();
    this.rows.delete(item);
    item.open = !item.open;
    this.open = this.open.filter((o) => o.item !== item);
    if (item.open) {
      // Measure the expanded row off-screen, then place it.
      const probe = this.render(item, 0);
      probe.classList.add('vl-row', 'vl-probe');
      this.scroller.append(probe);
      const height = Math.max(this.rowH, probe.offsetHeight);
      probe.remove();
      this.open.push({ item, height, index: -1 });
    }
    this.refresh();
  }

  /** Scrolls so that row `i` is in view. */
  scrollTo(i) {
    this.scroller.scrollTop = this.offsetOf(Math.max(0, Math.min(i, this.items.length - 1)));
    this.draw();
  }

  /** Forgets all rows (a new search). */
  clear() {
    for (const el of this.rows.values()) el.remove();
    this.rows.clear();
    this.open = [];
    this.items = [];
    this.scroller.scrollTop = 0;
    this.refresh();
  }
}
