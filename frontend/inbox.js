// Local test inbox: list what the built-in SMTP server received and open each message.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, messageView, plural, breakable, focusLost } from './dom.js';

let available = false;
let opener = null; // the Open button of the message on view, for focus when it closes
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
    if (button) {
      opener = button;
      withBusy(button, () => openMessage(button.dataset.id));
    }
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
  // Rebuilding the list must not drop the focus of someone on an Open button.
  const active = document.activeElement;
  const focusedId = active && active.matches && active.matches('button.inbox-open') ? active.dataset.id : null;
  const openerId = opener ? opener.dataset.id : null;
  const frag = document.createDocumentFragment();
  messageIds.clear();
  for (const m of messages) {
    messageIds.set(String(m.id), m.id);
    const subject = m.subject || '(no subject)';
    const from = String(m.from ?? '');
    const to = Array.isArray(m.to) ? m.to.join(', ') : String(m.to ?? '');
    frag.append(el('tr', { dataset: { id: String(m.id) } },
      el('td', { class: 'address' }, breakable(from)),
      el('td', { class: 'address' }, to.split(', ').flatMap((addr, i) => [i ? ', ' : null, ...breakable(addr)])),
      el('td', { class: 'subject', text: subject }),
      el('td', { class: 'nowrap', text: formatTime(m.date) }),
      el('td', {}, el('button', {
        type: 'button',
        class: 'inbox-open',
        dataset: { id: String(m.id) },
        // Distinct names for screen readers ("sent by", not "from": a name containing the
        // word would also match the From field's label in label look-ups).
        'aria-label': `Open message: ${subject}${from ? `, sent by ${from}` : ''}${to ? ` to ${to}` : ''}`,
        text: 'Open',
      }))));
  }
  const list = $('#inbox-list');
  list.replaceChildren(frag);
  $('.inbox-scroll').hidden = messages.length === 0;
  const again = (id) => (id === null ? null : [...list.querySelectorAll('button.inbox-open')].find((b) => b.dataset.id === id) || null);
  if (openerId !== null) opener = again(openerId);
  if (focusedId !== null && focusLost()) {
    const button = again(focusedId);
    if (button) button.focus();
    else $('#inbox-refresh').focus();
  }
  const count = el('p', { class: 'hint', text: messages.length ? `${plural(messages.length, 'message')} received.` : 'No messages yet.' });
  show(out, count);

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
  $('.inbox-scroll').hidden = true;
  $('#inbox-view').hidden = true;
  show($('#inbox-view'));
  opener = null;
  show(out, el('p', { class: 'hint', text: 'The inbox is empty.' }));
}

function closeMessage() {
  const view = $('#inbox-view');
  view.hidden = true;
  show(view);
  // Back to where the user came from: the message's Open button, or Refresh.
  const target = opener && opener.isConnected ? opener : $('#inbox-refresh');
  if (focusLost() && target) target.focus();
}

async function openMessage(id) {
  const view = $('#inbox-view');
  const result = await call('inbox_message', { id: messageIds.has(id) ? messageIds.get(id) : id });
  if (!result.ok) {
    show($('#inbox-status'), errorBlock(result.error));
    return;
  }
  const m = result.data || {};
  const when = Date.parse(m.date);
  const headers = [['From', m.from], ['To', Array.isArray(m.to) ? m.to.join(', ') : m.to], ['Subject', m.subject],
    ['Date', Number.isFinite(when) ? new Date(when).toLocaleString() : m.date]];
  const all = Array.isArray(m.headers) ? m.headers.map((h) => `${String(h[0] ?? '')}: ${String(h[1] ?? '')}`).join('\n') : '';
  show(view, messageView({ title: m.subject || '(no subject)', headers, html: m.html, htmlUrl: m.html_url, text: m.text }),
    all ? el('details', { class: 'text-part source-part' }, el('summary', { text: 'Show source' }), el('pre', { class: 'message-text', text: all })) : null,
    el('button', { type: 'button', class: 'link-button', text: 'Close message', onclick: closeMessage }));
  view.hidden = false;
  view.scrollIntoView({ block: 'nearest' }); // the message opens below the list: bring it into view
}
