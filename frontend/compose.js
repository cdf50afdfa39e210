// Compose section: subject, message, format, field insertion, preview of recipient N and
// "Send test to me".

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, messageView, plural } from './dom.js';

let deps = null;
let lastTarget = null;

export function initCompose(message, dependencies) {
  deps = dependencies;
  const m = message || {};
  $('#subject').value = m.subject ?? '';
  $('#message').value = m.body ?? '';
  const format = m.format === 'text' ? 'text' : 'html';
  $(format === 'text' ? '#format-text' : '#format-html').checked = true;

  for (const id of ['#subject', '#message']) {
    $(id).addEventListener('focus', (event) => { lastTarget = event.currentTarget; });
  }
  $('#insert-field').addEventListener('change', insertField);
  $('#preview').addEventListener('click', (event) => withBusy(event.currentTarget, preview));
  $('#send-test').addEventListener('click', (event) => withBusy(event.currentTarget, sendTest));
}

/** The message object the bridge expects. */
export function getMessage() {
  return {
    subject: $('#subject').value,
    body: $('#message').value,
    format: $('#format-text').checked ? 'text' : 'html',
  };
}

/** Offer the fields of the current recipients list in "Insert field". */
export function setFields(fields) {
  const select = $('#insert-field');
  const placeholder = el('option', { value: '', text: fields.length ? 'Choose a field…' : 'No fields yet' });
  select.replaceChildren(placeholder, ...fields.map((name) => el('option', { value: name, text: name })));
  select.value = '';
}

export function setRecipientTotal(total) {
  const input = $('#preview-index');
  if (total > 0) input.max = String(total);
  else input.removeAttribute('max');
  if (total > 0 && Number(input.value) > total) input.value = String(total);
}

function insertField() {
  const select = $('#insert-field');
  const name = select.value;
  if (!name) return;
  const target = lastTarget || $('#message');
  const text = `{{ ${name} }}`;
  const start = target.selectionStart ?? target.value.length;
  const end = target.selectionEnd ?? start;
  target.setRangeText(text, start, end, 'end');
  target.dispatchEvent(new Event('input', { bubbles: true }));
  select.value = '';
  target.focus();
}

function previewIndex() {
  const n = Number.parseInt($('#preview-index').value, 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/** "Line 3, subject: 'name' is undefined" items. */
export function problemsList(problems, limit = 200) {
  const items = problems.slice(0, limit).map((p) => {
    const message = String(p.message || '');
    // The bridge's messages usually name the line already ("line 3: ...").
    if (p.line && message.toLowerCase().startsWith(`line ${p.line}`)) return el('li', { text: message });
    return el('li', {},
      el('span', { class: 'line-ref', text: p.line ? `Line ${p.line}` : 'Template' }),
      p.field ? el('span', { class: 'field-ref', text: `, ${p.field}` }) : null,
      ': ', el('span', { text: message }));
  });
  if (problems.length > limit) items.push(el('li', { class: 'hint', text: `…and ${problems.length - limit} more` }));
  return el('ul', { class: 'issue-list problems' }, items);
}

async function preview() {
  const out = $('#compose-status');
  const area = $('#preview-area');
  show(out, busyLine('Rendering the preview…'));
  const result = await call('preview_message', {
    message: getMessage(),
    from_address: deps.getFromAddress(),
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
    ? [el('p', { class: 'fail-line', text: `${plural(problems.length, 'problem')} in this message:` }), problemsList(problems)]
    : el('p', { class: 'ok-line', text: `Preview of recipient ${d.index ?? previewIndex()} of ${d.total ?? '?'}.` }));
  const isText = getMessage().format === 'text';
  show(area, messageView({
    title: `Recipient ${d.index ?? previewIndex()} of ${d.total ?? '?'}`,
    headers: [['From', d.from], ['To', d.to], ['Subject', d.subject]],
    html: isText ? null : d.html,
    text: d.text,
  }));
  area.hidden = false;
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
