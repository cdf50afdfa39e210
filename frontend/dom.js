// Small DOM helpers. Everything that reaches the page goes through textContent or
// createElement: there is no HTML parsing of data anywhere in the frontend.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/**
 * Create an element. props: class, text, dataset, on<event> handlers; any other key is set
 * as an attribute (true -> empty attribute, false/null/undefined -> skipped).
 * Children: nodes or strings (strings become text nodes).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace a container's content with the given nodes/strings. */
export function show(container, ...children) {
  container.replaceChildren();
  append(container, children);
}

/** Plural helper: plural(3, 'row') -> '3 rows'. */
export function plural(n, word, many = word + 's') {
  return `${n} ${n === 1 ? word : many}`;
}

/** An error from the bridge: title, message, cause and numbered fix steps. */
export function errorBlock(error, { extraFix = [] } = {}) {
  const e = error && typeof error === 'object' ? error : { message: String(error ?? '') };
  // The category's code stays out of the sentence (it is in the results CSV and --progress
  // jsonl); the box keeps it as data for whoever needs to tell errors apart.
  const box = el('div', { class: 'error-box', dataset: e.category ? { category: String(e.category) } : {} });
  box.append(el('p', { class: 'error-title' }, el('strong', { text: e.title || 'Something went wrong' })));
  if (e.message) box.append(el('p', { class: 'error-message', text: plainWords(e.message) }));
  if (e.cause) box.append(el('p', { class: 'error-cause' }, el('span', { class: 'label', text: 'Cause: ' }), e.cause));
  const fix = uniq([...(Array.isArray(e.fix) ? e.fix : []), ...extraFix]);
  if (fix.length) {
    box.append(el('p', { class: 'label', text: 'How to fix:' }));
    box.append(el('ol', { class: 'fix-steps' }, fix.map((step) => el('li', { text: step }))));
  }
  return box;
}

/**
 * Security "None" is an option name, not words: a sentence says "no encryption".
 * ("port 465 speaks SSL/TLS (implicit TLS), not NONE" -> "..., not plain SMTP with no encryption";
 * "Security is None: the connection is not encrypted" -> "no encryption chosen: the connection ...")
 */
export function plainWords(text) {
  return String(text ?? '')
    .replace(/\bnot NONE\b/g, 'not plain SMTP with no encryption')
    .replace(/\bSecurity is None\b:?\s*/g, 'no encryption chosen: ');
}

export function uniq(items) {
  return [...new Set(items.filter((x) => typeof x === 'string' && x))];
}

/** A short "working" line for status areas. */
export function busyLine(text) {
  return el('p', { class: 'busy', text });
}

/**
 * Disable a button while an async action runs; returns the action's result. A disabled
 * button loses keyboard focus (it drops to <body>): when the button had focus and nothing
 * else took it meanwhile, focus goes back to the button (or to options.focusAfter()).
 */
export async function withBusy(button, action, { focusAfter = null } = {}) {
  const wasDisabled = button.disabled;
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = wasDisabled;
    if (hadFocus && focusLost()) {
      const target = (focusAfter && focusAfter()) || button;
      if (target && target.isConnected && !target.disabled) target.focus();
    }
  }
}

/** True when keyboard focus is nowhere in particular (on <body>, or on a control that went away). */
export function focusLost() {
  const active = document.activeElement;
  return !active || active === document.body || active === document.documentElement || !active.isConnected
    || (active.disabled === true) || active.closest('[hidden]') !== null;
}

/**
 * An address as text nodes with a line-break opportunity after the "@", so a narrow column
 * wraps "dave@" / "example.org" instead of cutting a word in the middle.
 */
export function breakable(text) {
  const value = String(text ?? '');
  const at = value.indexOf('@');
  if (at <= 0 || at === value.length - 1) return [value];
  // Short addresses stay whole (a column fits them); only a long one may wrap at its "@".
  const start = Math.max(value.lastIndexOf(' ', at), value.lastIndexOf('<', at)) + 1;
  const end = value.slice(at).search(/[\s>,]/);
  const length = (end < 0 ? value.length : at + end) - start;
  if (length <= 24) return [value];
  return [value.slice(0, at + 1), document.createElement('wbr'), value.slice(at + 1)];
}

/**
 * Line numbers as short text: "line 4", "lines 2, 3, 5 and 6", "lines 2–40, 45 and 12 more".
 * Runs of three or more consecutive lines become a range.
 */
export function linesText(lines, { maxParts = 6 } = {}) {
  const sorted = [...new Set(lines.filter((n) => Number.isFinite(n)))].sort((a, b) => a - b);
  if (!sorted.length) return '';
  const runs = [];
  for (const n of sorted) {
    const last = runs[runs.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else runs.push([n, n]);
  }
  const parts = [];
  for (const [a, b] of runs) {
    if (b - a >= 2) parts.push({ text: `${a}–${b}`, count: b - a + 1 });
    else for (let n = a; n <= b; n += 1) parts.push({ text: String(n), count: 1 });
  }
  const shown = parts.slice(0, maxParts).map((p) => p.text);
  const rest = parts.slice(maxParts).reduce((sum, p) => sum + p.count, 0);
  if (rest) shown.push(`${rest} more`);
  const word = sorted.length === 1 ? 'line' : 'lines';
  if (shown.length === 1) return `${word} ${shown[0]}`;
  return `${word} ${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

/** Render a message (preview or inbox): header lines as text, HTML in a sandboxed iframe
 * (or in what frames(html, htmlUrl) makes: preview.js's desktop and phone views). */
export function messageView({ headers, html, text, title, htmlUrl, frames = null }) {
  const parts = [];
  if (title) parts.push(el('h3', { text: title }));
  const dl = el('dl', { class: 'headers' });
  for (const [name, value] of headers) {
    dl.append(el('dt', { text: name }), el('dd', { text: value ?? '' }));
  }
  parts.push(dl);
  if (typeof html === 'string' && html !== '' && frames) {
    parts.push(frames(html, htmlUrl));
  } else if (typeof html === 'string' && html !== '') {
    // No allow-scripts, no allow-same-origin: the message can neither run code nor reach us.
    const frame = el('iframe', { sandbox: '', class: 'message-frame', title: 'Message content', referrerpolicy: 'no-referrer' });
    // Served by the app with its own policy (inline styles, embedded images; never scripts or
    // remote content), so the message looks as it will; srcdoc would inherit this page's
    // policy and lose every style.
    if (typeof htmlUrl === 'string' && htmlUrl.startsWith('/preview/')) frame.src = htmlUrl;
    else frame.srcdoc = html;
    parts.push(frame);
  }
  if (typeof text === 'string' && text !== '' && !(typeof html === 'string' && html !== '')) {
    parts.push(el('pre', { class: 'message-text', text }));
  } else if (typeof text === 'string' && text !== '') {
    const details = el('details', { class: 'text-part' }, el('summary', { text: 'Plain-text version' }), el('pre', { class: 'message-text', text }));
    parts.push(details);
  }
  return parts;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 1) return 'under 1 s';
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
  const h = Math.floor(m / 60);
  const mm = m % 60;
  return mm ? `${h} h ${mm} min` : `${h} h`;
}

/** A sending rate as whole numbers: "42 messages/min", or per hour when under one a minute. */
export function formatRate(perMinute) {
  if (!Number.isFinite(perMinute) || perMinute <= 0) return '';
  if (perMinute >= 0.995) {
    const n = Math.round(perMinute);
    return `${n} ${n === 1 ? 'message' : 'messages'}/min`;
  }
  const perHour = Math.max(1, Math.round(perMinute * 60));
  return `${perHour} ${perHour === 1 ? 'message' : 'messages'}/hour`;
}

/** A byte count for people: "820 B", "14 KB", "2.4 MB" (1 KB = 1024 bytes). */
export function formatBytes(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = value >= 10 ? Math.round(value) : Number(value.toFixed(1));
  return `${shown} ${units[unit]}`;
}

/** A File's bytes as base64 (for the bridge's *_data methods in browser mode). */
export async function fileToBase64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/** Offer text as a file download (browser mode's "save as"). */
export function downloadText(filename, text, type) {
  const blob = new Blob([text], { type });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename, class: 'visually-hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * A button whose accessible name says what it acts on ("Remove report.pdf") while it shows
 * one short word: the rest is visually hidden text, not aria-label, so untrusted text stays
 * text and never becomes a label that getByLabel-style lookups (or screen readers' form
 * field lists) would confuse with a form field's.
 */
export function actionButton(word, object, props = {}) {
  return el('button', { type: 'button', ...props }, word, el('span', { class: 'visually-hidden', text: ` ${object}` }));
}

/** An inline question with its buttons (window.confirm may not work in the webview). */
export function confirmBox({ id, question, hint = null, buttons, onEscape = null }) {
  const questionId = `${id}-question`;
  const box = el('div', { class: 'confirm', id, role: 'group', 'aria-labelledby': questionId },
    el('p', { id: questionId, class: 'confirm-question', text: question }),
    hint ? el('p', { class: 'hint', text: hint }) : null,
    el('div', { class: 'actions' }, buttons));
  if (onEscape) {
    // Escape takes the safe way out, as the focused safe button would.
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        onEscape();
      }
    });
  }
  return box;
}
