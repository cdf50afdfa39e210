// The campaign being written survives a restart: Subject, Message, Format, Unsubscribe link and
// the Send settings are kept (in the app's data folder, by the core; never a password) as the
// user types, and restored at the next start with a way to start a new campaign instead.

import { call } from './api.js';
import { go } from './steps.js';
import { $, el, show } from './dom.js';

const SEND_FIELDS = ['delay', 'connections', 'limit-second', 'limit-minute', 'limit-hour', 'limit-day',
  'retry-base', 'retry-cap', 'retry-attempts', 'retry-max-age', 'max-failures'];
const MESSAGE_FIELDS = ['subject', 'message', 'unsubscribe', 'format-html', 'format-markdown', 'format-text', 'raw-html'];
const SAVE_AFTER_MS = 500;

let deps = null;
let timer = null;

function sendValues() {
  const values = {};
  for (const id of SEND_FIELDS) {
    const input = document.getElementById(id);
    if (input) values[id] = input.value;
  }
  return values;
}

/** Save soon (once the typing pauses; also after a list is read or a file attached). */
export function saveSoon() {
  clearTimeout(timer);
  timer = setTimeout(saveNow, SAVE_AFTER_MS);
}

async function saveNow() {
  clearTimeout(timer);
  timer = null;
  if (!loaded) return; // before the kept draft was read: saving now would replace it
  const send = { ...sendValues(), ...(deps.extraSend ? deps.extraSend() : {}) };
  await call('draft', { action: 'save', draft: { message: deps.getMessage(), send } });
}

function clockTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return '';
  return when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function restoredLine(saved, restored = {}) {
  const line = $('#draft-status');
  const fresh = el('button', { type: 'button', id: 'new-campaign', class: 'link-button', text: 'Start a new campaign' });
  fresh.addEventListener('click', async () => {
    clearTimeout(timer);
    await call('draft', { action: 'clear' });
    deps.setMessage({ subject: '', body: '', format: 'html', unsubscribe: [] });
    deps.onInputsCleared();
    show(line, el('span', { text: 'Started a new campaign: the fields are empty.' }));
    go('recipients', { focus: false });
    $('#paste').focus();
  });
  const at = clockTime(saved);
  const parts = [];
  if (restored.list) parts.push(`the list (${restored.list})`);
  const files = Array.isArray(restored.attachments) ? restored.attachments.length : 0;
  if (files) parts.push(`${files} attached file${files === 1 ? '' : 's'}`);
  const also = parts.length ? ` with ${parts.join(' and ')}` : '';
  const lost = [restored.list_error, ...(Array.isArray(restored.missing) ? restored.missing : [])].filter(Boolean);
  show(line, el('span', { text: `Restored your draft${at ? ` from ${at}` : ''}${also} — ` }), fresh,
    lost.length ? el('span', { class: 'warn', text: ` Not restored: ${lost.join('; ')}` }) : null);
}

/** Restore the kept draft (if any), then keep it as the user types. */
let loaded = false;

export async function initDraft(dependencies) {
  deps = dependencies;
  const result = await call('draft', { action: 'load' });
  const draft = result.ok && result.data ? result.data.draft : null;
  if (draft && draft.message) {
    deps.setMessage(draft.message);
    for (const [id, value] of Object.entries(draft.send || {})) {
      const input = SEND_FIELDS.includes(id) ? document.getElementById(id) : null;
      if (input && typeof value === 'string') input.value = value;
    }
    if (deps.restoreSend) deps.restoreSend(draft.send || {});
    const restored = draft.restored || {};
    if (restored.preview) deps.onListRestored(restored.preview);
    if (Array.isArray(restored.attachments) && restored.attachments.length) deps.onAttachmentsRestored();
    restoredLine(draft.saved, restored);
  }
  loaded = true;
  for (const id of [...MESSAGE_FIELDS, ...SEND_FIELDS]) {
    const input = document.getElementById(id);
    if (input) {
      input.addEventListener('input', saveSoon);
      input.addEventListener('change', saveSoon);
    }
  }
  // When (Review & send): its date, zone, window and local time.
  const when = document.getElementById('when-box');
  if (when) {
    when.addEventListener('input', saveSoon);
    when.addEventListener('change', saveSoon);
  }
  // A field inserted by a button, a loaded template: saved when the page is left at the latest.
  window.addEventListener('pagehide', () => { if (timer) saveNow(); });
}
