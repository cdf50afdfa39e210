// Small DOM helpers. Everything that reaches the page goes through textContent or
// createElement: there is no HTML parsing of data anywhere in the frontend.

export const $ = (selector, root = document) => root.querySelector(selector);

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
  const box = el('div', { class: 'error-box' });
  const title = el('p', { class: 'error-title' }, el('strong', { text: e.title || 'Something went wrong' }));
  if (e.category) title.append(' ', el('span', { class: 'category', text: `(${e.category})` }));
  box.append(title);
  if (e.message) box.append(el('p', { class: 'error-message', text: e.message }));
  if (e.cause) box.append(el('p', { class: 'error-cause' }, el('span', { class: 'label', text: 'Cause: ' }), e.cause));
  const fix = uniq([...(Array.isArray(e.fix) ? e.fix : []), ...extraFix]);
  if (fix.length) {
    box.append(el('p', { class: 'label', text: 'How to fix:' }));
    box.append(el('ol', { class: 'fix-steps' }, fix.map((step) => el('li', { text: step }))));
  }
  return box;
}

export function uniq(items) {
  return [...new Set(items.filter((x) => typeof x === 'string' && x))];
}

/** A short "working" line for status areas. */
export function busyLine(text) {
  return el('p', { class: 'busy', text });
}

/** Disable a button while an async action runs; returns the action's result. */
export async function withBusy(button, action) {
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = wasDisabled;
  }
}

/** Render a message (preview or inbox): header lines as text, HTML in a sandboxed iframe. */
export function messageView({ headers, html, text, title }) {
  const parts = [];
  if (title) parts.push(el('h3', { text: title }));
  const dl = el('dl', { class: 'headers' });
  for (const [name, value] of headers) {
    dl.append(el('dt', { text: name }), el('dd', { text: value ?? '' }));
  }
  parts.push(dl);
  if (typeof html === 'string' && html !== '') {
    // No allow-scripts, no allow-same-origin: the message can neither run code nor reach us.
    const frame = el('iframe', { sandbox: '', class: 'message-frame', title: 'Message content', referrerpolicy: 'no-referrer' });
    frame.srcdoc = html;
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
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
  const h = Math.floor(m / 60);
  const mm = m % 60;
  return mm ? `${h} h ${mm} min` : `${h} h`;
}
