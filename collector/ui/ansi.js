// Lines with ANSI colours render as coloured spans; other escape
// sequences are dropped and other control characters shown as their
// Unicode pictures (␛, ␍, ...), so no line can move the cursor, clear the
// screen or hide text. Everything goes in through text nodes.

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;
// CSI ... final byte, OSC ... BEL/ST, or a lone two-byte escape.
// eslint-disable-next-line no-control-regex
const ESCAPE = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

function visible(text) {
  if (!CONTROL.test(text)) return text;
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => String.fromCharCode(c === '\x7f' ? 0x2421 : 0x2400 + c.charCodeAt(0)));
}

function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((x) => Number.parseInt(x || '0', 10));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(style, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, rgbFg: null, rgbBg: null });
    else if (c === 1) style.bold = true;
    else if (c === 2) style.dim = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 22) { style.bold = false; style.dim = false; }
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c >= 30 && c <= 37) { style.fg = c - 30; style.rgbFg = null; }
    else if (c >= 90 && c <= 97) { style.fg = c - 90 + 8; style.rgbFg = null; }
    else if (c === 39) { style.fg = null; style.rgbFg = null; }
    else if (c >= 40 && c <= 47) { style.bg = c - 40; style.rgbBg = null; }
    else if (c >= 100 && c <= 107) { style.bg = c - 100 + 8; style.rgbBg = null; }
    else if (c === 49) { style.bg = null; style.rgbBg = null; }
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      const n = codes[i + 2];
      if (n < 16) style[c === 38 ? 'fg' : 'bg'] = n;
      else if (n < 256) style[c === 38 ? 'rgbFg' : 'rgbBg'] = xterm256(n);
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      const [r, g, b] = codes.slice(i + 2, i + 5).map((x) => Math.max(0, Math.min(255, x || 0)));
      style[c === 38 ? 'rgbFg' : 'rgbBg'] = `rgb(${r},${g},${b})`;
      i += 4;
    }
  }
}

function xterm256(n) {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const level = (x) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
}

function span(text, style) {
  const plain = style.fg === null && style.bg === null && !style.bold && !style.dim &&
    !style.italic && !style.underline && !style.rgbFg && !style.rgbBg;
  if (plain) return document.createTextNode(text);
  const s = document.createElement('span');
  const cls = [];
  if (style.fg !== null) cls.push(`a-f${style.fg}`);
  if (style.bg !== null) cls.push(`a-b${style.bg}`);
  if (style.bold) cls.push('a-bold');
  if (style.dim) cls.push('a-dim');
  if (style.italic) cls.push('a-it');
  if (style.underline) cls.push('a-ul');
  s.className = cls.join(' ');
  if (style.rgbFg) s.style.color = style.rgbFg;
  if (style.rgbBg) s.style.backgroundColor = style.rgbBg;
  s.textContent = text;
  return s;
}

/** The text of `line` without escape sequences (for copying, matching). */
export function stripAnsi(line) {
  return line.replace(ESCAPE, '');
}

/** Appends `line`, coloured, to `el`. */
export function renderAnsi(el, line) {
  if (!line.includes('\x1b')) {
    el.append(visible(line));
    return;
  }
  const style = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, rgbFg: null, rgbBg: null };
  let last = 0;
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(line); m; m = ESCAPE.exec(line)) {
    if (m.index > last) el.append(span(visible(line.slice(last, m.index)), style));
    if (m[2] === 'm') applySgr(style, m[1]);
    last = ESCAPE.lastIndex;
  }
  if (last < line.length) el.append(span(visible(line.slice(last)), style));
}
