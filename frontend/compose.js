// Compose section: subject, message, format, field insertion, unsubscribe link, preview of
// recipient N (headers, body, attachments) and "Send test to me".

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, messageView, plural, linesText, formatBytes } from './dom.js';
import { previewViews } from './preview.js';

let deps = null;
let lastTarget = null;

export function initCompose(message, dependencies) {
  deps = dependencies;
  setMessage(message || {});
  $('#unsubscribe').addEventListener('input', checkUnsubscribe);
  for (const radio of document.querySelectorAll('input[name="format"]')) {
    radio.addEventListener('change', () => { $('#raw-html-field').hidden = !$('#format-markdown').checked; });
  }

  for (const id of ['#subject', '#message']) {
    $(id).addEventListener('focus', (event) => { lastTarget = event.currentTarget; });
  }
  // Choosing in the select only selects (arrow keys must not insert): the Insert button inserts.
  $('#preview').addEventListener('click', (event) => withBusy(event.currentTarget, preview));
  $('#send-test').addEventListener('click', (event) => withBusy(event.currentTarget, sendTest));
}

/** The message object the bridge expects. */
export function getMessage() {
  return {
    subject: $('#subject').value,
    body: $('#message').value,
    format: $('#format-text').checked ? 'text' : $('#format-markdown').checked ? 'markdown' : 'html',
    raw_html: $('#format-markdown').checked && $('#raw-html').checked,
    signature: $('#add-signature').checked,
    unsubscribe: parseUnsubscribe($('#unsubscribe').value),
  };
}

/** Fill Subject, Message, Format and Unsubscribe link (saved settings, a loaded template). */
export function setMessage(m) {
  $('#subject').value = m.subject ?? '';
  $('#message').value = m.body ?? '';
  const format = ['text', 'markdown'].includes(m.format) ? m.format : 'html';
  $(`#format-${format}`).checked = true;
  $('#raw-html').checked = m.raw_html === true;
  $('#raw-html-field').hidden = format !== 'markdown';
  const unsubscribe = Array.isArray(m.unsubscribe) ? m.unsubscribe.filter((u) => typeof u === 'string') : [];
  $('#unsubscribe').value = unsubscribe.join(' ');
  checkUnsubscribe();
}

const SCHEME = /^(?:https?:\/\/|mailto:)/i;

/**
 * "https://x.example/u?e={{ email }}, mailto:u@x.example" -> the two addresses. Entries are
 * cut only where a new one starts (https://, http://, mailto:), so the spaces inside
 * {{ email }} and a comma inside a link's query stay where they are.
 */
export function parseUnsubscribe(value) {
  const text = String(value ?? '').trim();
  if (!text) return [];
  return text.split(/[\s,;]+(?=(?:https?:\/\/|mailto:))/i)
    .map((piece) => piece.replace(/^[\s,;]+|[\s,;]+$/g, ''))
    .filter(Boolean);
}

/** Say at once what the bridge would refuse (it decides; this only spares a round trip). */
function checkUnsubscribe() {
  const entries = parseUnsubscribe($('#unsubscribe').value);
  const notes = [];
  for (const entry of entries) {
    if (!SCHEME.test(entry)) notes.push(`“${entry}” is neither an https:// link nor a mailto: address.`);
    else if (/^http:\/\//i.test(entry)) notes.push(`Use an https:// link, not http:// (${entry}): mail apps offer one-click unsubscribe only over https.`);
  }
  const links = entries.filter((e) => /^https?:\/\//i.test(e)).length;
  const mailtos = entries.filter((e) => /^mailto:/i.test(e)).length;
  if (links > 1 || mailtos > 1) notes.push('Give at most one link and one mailto: address.');
  const out = $('#unsubscribe-check');
  out.textContent = notes.join(' ');
  out.hidden = notes.length === 0;
}

/** Offer the fields of the current recipients list in "Insert field". */
export function setFields(fields) {
  const chips = fields.map((name) => el('button', { type: 'button', 'data-field': name, text: `{{ ${name} }}`,
    onmousedown: (event) => event.preventDefault(), // the cursor stays where it was typed
    onclick: () => insertField(name) }));
  show($('#field-chips'), chips.length ? chips : el('span', { class: 'hint', text: 'Add recipients first: their columns become fields.' }));
}

export function setRecipientTotal(total) {
  const input = $('#preview-index');
  if (total > 0) input.max = String(total);
  else input.removeAttribute('max');
  if (total > 0 && Number(input.value) > total) input.value = String(total);
}

function insertField(name) {
  const target = lastTarget || $('#message');
  const text = `{{ ${name} }}`;
  const start = target.selectionStart ?? target.value.length;
  const end = target.selectionEnd ?? start;
  target.focus();
  target.setRangeText(text, start, end, 'end');
  target.dispatchEvent(new Event('input', { bubbles: true }));
}

function previewIndex() {
  const n = Number.parseInt($('#preview-index').value, 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

const LINE_PREFIX = /^line \d+:\s*/i;

/**
 * Problems grouped: one item per distinct problem (same field, same message apart from its
 * "line N:" prefix) with its lines listed compactly, so 10,000 rows with the same mistake
 * make one line, not 10,000.
 */
export function groupProblems(problems) {
  const groups = new Map();
  for (const p of problems) {
    if (!p || typeof p !== 'object') continue;
    const message = String(p.message || '').replace(LINE_PREFIX, '');
    const key = `${p.field ?? ''}\u0000${message}`;
    let group = groups.get(key);
    if (!group) {
      group = { field: p.field ?? null, message, lines: [] };
      groups.set(key, group);
    }
    const line = Number(p.line);
    if (p.line !== null && p.line !== undefined && Number.isFinite(line)) group.lines.push(line);
  }
  return [...groups.values()];
}

/** "Lines 2, 3, 5 and 6: Subject: field 'x' is not a column…" items, one per distinct problem. */
export function problemsList(problems, limit = 50) {
  const groups = groupProblems(problems);
  const items = groups.slice(0, limit).map((g) => {
    const where = g.lines.length ? linesText(g.lines) : 'Template';
    return el('li', {},
      el('span', { class: 'line-ref', text: where.charAt(0).toUpperCase() + where.slice(1) }),
      ': ', el('span', { text: g.message }));
  });
  if (groups.length > limit) items.push(el('li', { class: 'hint', text: `…and ${plural(groups.length - limit, 'other problem')}` }));
  return el('ul', { class: 'issue-list problems' }, items);
}

/** How many distinct problems (after grouping). */
export function problemCount(problems) {
  return groupProblems(problems).length;
}

async function preview() {
  const out = $('#compose-status');
  const area = $('#preview-area');
  show(out, busyLine('Rendering the preview…'));
  const result = await call('preview_message', {
    message: getMessage(),
    from_address: deps.getFromAddress(),
    account: deps.getAccount(),
    index: previewIndex(),
  });
  if (!result.ok) {
    show(out, errorBlock(result.error));
    area.hidden = true;
    return;
  }
  const d = result.data || {};
  const problems = Array.isArray(d.problems) ? d.problems : [];
  show(out, problems.length
    ? [el('p', { class: 'fail-line', text: `${plural(problemCount(problems), 'problem')} in this message:` }), problemsList(problems)]
    : el('p', { class: 'ok-line', text: `Preview of recipient ${d.index ?? previewIndex()} of ${d.total ?? '?'}.` }));
  const warnings = Array.isArray(d.warnings) ? d.warnings.filter((w) => typeof w === 'string') : [];
  if (warnings.length) out.append(...warnings.map((w) => el('p', { class: 'warn', text: `Warning: ${w}` })));
  const isText = getMessage().format === 'text';
  show(area, messageView({
    title: `Recipient ${d.index ?? previewIndex()} of ${d.total ?? '?'}`,
    headers: [['From', d.from], ['To', d.to], ['Subject', d.subject], ...extraHeaders(d.headers)],
    html: isText ? null : d.html,
    htmlUrl: d.html_url,
    frames: previewViews,
    text: d.text,
  }), attachmentsView(d.attachments));
  area.hidden = false;
}

const SHOWN_ALREADY = new Set(['from', 'to', 'subject']);
const TECHNICAL = /^(?:content-|mime-version$)/i;

/** The headers besides From/To/Subject worth reading (List-Unsubscribe, Reply-To, Date, ...). */
function extraHeaders(headers) {
  if (!Array.isArray(headers)) return [];
  return headers
    .filter((h) => Array.isArray(h) && typeof h[0] === 'string' && !SHOWN_ALREADY.has(h[0].toLowerCase()) && !TECHNICAL.test(h[0]))
    .map(([name, value]) => [name, String(value ?? '')]);
}

function attachmentsView(attachments) {
  if (!Array.isArray(attachments)) return null;
  const list = attachments.filter((a) => a && typeof a === 'object');
  if (!list.length) return el('p', { class: 'hint', text: 'No attachments.' });
  const total = list.reduce((sum, a) => sum + (Number(a.size) || 0), 0);
  return [
    el('h4', { text: `Attachments (${plural(list.length, 'file')}, ${formatBytes(total)})` }),
    el('ul', { class: 'attachment-list-preview' }, list.map((a) => el('li', {},
      el('span', { class: 'value', text: a.filename ?? '' }),
      el('span', { class: 'hint', text: ` ${[formatBytes(a.size), a.content_type].filter(Boolean).join(', ')}` })))),
  ];
}

async function sendTest() {
  const out = $('#compose-status');
  show(out, busyLine('Sending a test message to you…'));
  await deps.saveSettings();
  const result = await call('send_test', {
    account: deps.getAccount(),
    ...deps.getCredentials(),
    message: getMessage(),
    index: previewIndex(),
  });
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  show(out, el('p', { class: 'ok-line', text: `Test message sent to ${d.to || 'you'}.` }),
    d.message_id ? el('p', { class: 'hint', text: `Message-ID: ${d.message_id}` }) : null);
  deps.onTestSent();
}
