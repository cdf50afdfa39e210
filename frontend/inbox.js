// Local test inbox: list what the built-in SMTP server received and open each message.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, messageView, plural } from './dom.js';

let available = false;
const messageIds = new Map(); // data-id text -> the id as the bridge gave it

export function initInbox(info) {
  available = !!info.inbox;
  const address = $('#inbox-address');
  if (available) {
    address.textContent = `Listening on ${info.inbox.host}:${info.inbox.port}. Choose “Local test inbox” as the Provider to send there.`;
  } else {
    address.textContent = 'The local test inbox is not running in this session.';
  }
  $('#inbox-refresh').disabled = !available;
  $('#inbox-clear').disabled = !available;
  $('#inbox-refresh').addEventListener('click', (event) => withBusy(event.currentTarget, refreshInbox));
  $('#inbox-clear').addEventListener('click', (event) => withBusy(event.currentTarget, clearInbox));
  $('#inbox-list').addEventListener('click', (event) => {
    const button = event.target.closest('button.inbox-open');
    if (button) withBusy(button, () => openMessage(button.dataset.id));
  });
}

function formatTime(value) {
  if (!value) return '';
  const t = Date.parse(value);
  if (!Number.isFinite(t)) return String(value);
  const d = new Date(t);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

export async function refreshInbox({ quiet = false } = {}) {
  if (!available) return;
  const out = $('#inbox-status');
  if (!quiet) show(out, busyLine('Refreshing…'));
  const result = await call('inbox_list');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  const messages = (result.data && Array.isArray(result.data.messages)) ? result.data.messages : [];
  const frag = document.createDocumentFragment();
  messageIds.clear();
  for (const m of messages) {
    messageIds.set(String(m.id), m.id);
    const subject = m.subject || '(no subject)';
    frag.append(el('tr', { dataset: { id: String(m.id) } },
      el('td', { text: m.from ?? '' }),
      el('td', { text: Array.isArray(m.to) ? m.to.join(', ') : m.to ?? '' }),
      el('td', { text: subject }),
      el('td', { class: 'nowrap', text: formatTime(m.date) }),
      el('td', {}, el('button', { type: 'button', class: 'inbox-open', dataset: { id: String(m.id) }, text: 'Open' }))));
  }
  $('#inbox-list').replaceChildren(frag);
  show(out, el('p', { class: 'hint', text: messages.length ? `${plural(messages.length, 'message')} received.` : 'No messages yet.' }));
}

async function clearInbox() {
  const out = $('#inbox-status');
  show(out, busyLine('Clearing…'));
  const result = await call('inbox_clear');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  $('#inbox-list').replaceChildren();
  $('#inbox-view').hidden = true;
  show($('#inbox-view'));
  show(out, el('p', { class: 'hint', text: 'The inbox is empty.' }));
}

async function openMessage(id) {
  const view = $('#inbox-view');
  const result = await call('inbox_message', { id: messageIds.has(id) ? messageIds.get(id) : id });
  if (!result.ok) {
    show($('#inbox-status'), errorBlock(result.error));
    return;
  }
  const m = result.data || {};
  const headers = Array.isArray(m.headers) && m.headers.length
    ? m.headers.map((h) => [String(h[0] ?? ''), String(h[1] ?? '')])
    : [['From', m.from], ['To', Array.isArray(m.to) ? m.to.join(', ') : m.to], ['Subject', m.subject], ['Date', m.date]];
  show(view, messageView({ title: m.subject || '(no subject)', headers, html: m.html, text: m.text }),
    el('button', { type: 'button', class: 'link-button', text: 'Close message', onclick: () => { view.hidden = true; show(view); } }));
  view.hidden = false;
}
