// Account > Signature: the account's signature (HTML and/or plain text), kept by the core with
// the account's settings and added below every message from it.

import { call } from './api.js';
import { $, el, show, errorBlock, withBusy } from './dom.js';

let getAccount = null;

/** getAccountFn() -> the account object the bridge expects. */
export function initSignature(getAccountFn) {
  getAccount = getAccountFn;
  $('#signature-box').addEventListener('toggle', () => { if ($('#signature-box').open) load(); });
  $('#save-signature').addEventListener('click', (event) => withBusy(event.currentTarget, save));
}

function said(d, verb) {
  const has = d.html || d.text;
  show($('#signature-status'), el('p', { class: has ? 'ok-line' : 'hint',
    text: has ? `${verb} for ${d.key}.` : `No signature for ${d.key}.` }));
}

async function load() {
  const result = await call('signature', { action: 'load', account: getAccount() });
  if (!result.ok) {
    show($('#signature-status'), errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  $('#signature-html').value = d.html || '';
  $('#signature-text').value = d.text || '';
  said(d, 'Saved');
}

async function save() {
  const result = await call('signature', { action: 'save', account: getAccount(),
    html: $('#signature-html').value, text: $('#signature-text').value });
  if (!result.ok) {
    show($('#signature-status'), errorBlock(result.error));
    $('#signature-html').focus();
    return;
  }
  const d = result.data || {};
  $('#signature-html').value = d.html || '';
  $('#signature-text').value = d.text || '';
  said(d, 'Signature saved');
}
