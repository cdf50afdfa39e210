// Review & send's two checks that make requests, each only when asked: Check links (each link
// of the first recipient's message followed: backend/linkcheck.py) and Check sender domain
// (SPF, DKIM, DMARC and the bulk-sender rule for the way this account sends: backend/authcheck.py).
// What they found is cleared when the message (or, for the domain, the account) changes.

import { call } from './api.js';
import { $, el, show, busyLine, withBusy, errorBlock, actionButton } from './dom.js';

const LINK_WORDS = { broken: 'Broken', warn: 'Worth a look', skipped: 'Skipped', not_checked: 'Not checked' };
const AUTH_WORDS = { ok: 'OK', warn: 'Worth a look', fail: 'To fix', unknown: 'Not known' };

let deps = null;
let linksKey = null; // what the links shown were checked for
let authKey = null;

/** deps: request() -> check_message's parameters (account, message, from_address, limits, ...). */
export function initChecks(dependencies) {
  deps = dependencies;
  $('#check-links').addEventListener('click', (event) => withBusy(event.currentTarget, checkLinks));
  $('#check-auth').addEventListener('click', (event) => withBusy(event.currentTarget, checkAuth));
}

function keyOf(params, withAccount) {
  return JSON.stringify(withAccount ? [params.message, params.account, params.from_address, params.limits] : [params.message]);
}

/** After any change (the review asked again): results for another message or account go. */
export function clearStaleChecks() {
  if (!deps) return;
  const params = deps.request();
  if (linksKey !== null && keyOf(params, false) !== linksKey) {
    linksKey = null;
    show($('#links-result'));
  }
  if (authKey !== null && keyOf(params, true) !== authKey) {
    authKey = null;
    show($('#auth-result'));
  }
}

/** A check asked of the core with a busy line in `out`: its data, or null when it failed (said
 * in `out`) or its answer is stale (current() false: the inputs changed meanwhile). */
async function ask(out, method, params, busy, current) {
  out.setAttribute('aria-busy', 'true');
  show(out, busyLine(busy));
  const result = await call(method, params);
  out.removeAttribute('aria-busy');
  if (!current()) {
    show(out);
    return null;
  }
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return null;
  }
  return result.data || {};
}

async function checkLinks() {
  const out = $('#links-result');
  const params = deps.request();
  linksKey = keyOf(params, false);
  const d = await ask(out, 'check_links', params, 'Checking links… (up to 20 s)', () => {
    if (linksKey === keyOf(deps.request(), false)) return true;
    linksKey = null; // the message changed meanwhile
    return false;
  });
  if (!d) return;
  const links = Array.isArray(d.links) ? d.links : [];
  const broken = Number(d.broken) || 0;
  const notOk = links.filter((l) => l && l.state !== 'ok');
  show(out,
    el('p', { class: broken ? 'fail-line check-summary' : notOk.length ? 'check-summary' : 'ok-line check-summary', id: 'links-summary', text: String(d.summary || '') }),
    notOk.length ? el('ul', { class: 'link-list', id: 'link-rows' }, notOk.map(linkRow)) : null,
    d.note ? el('p', { class: 'hint', text: String(d.note) }) : null);
}

function linkRow(link) {
  const state = LINK_WORDS[link.state] ? link.state : 'not_checked';
  return el('li', { class: 'link-row', dataset: { state } },
    el('span', { class: 'link-state', text: LINK_WORDS[state] }),
    el('span', { class: 'link-url', text: String(link.url ?? '') }),
    el('span', { class: 'link-words', text: String(link.words ?? '') }));
}

async function checkAuth() {
  const out = $('#auth-result');
  const params = { ...deps.request(), dkim_selectors: $('#dkim-selectors').value };
  authKey = keyOf(params, true);
  const d = await ask(out, 'check_authentication', params, 'Asking DNS about your domain…', () => {
    if (authKey === keyOf(deps.request(), true)) return true;
    authKey = null; // the account or the message changed meanwhile
    return false;
  });
  if (!d) return;
  const checks = Array.isArray(d.checks) ? d.checks : [];
  show(out,
    el('p', { class: 'auth-head', id: 'auth-head', text: `${d.domain || 'No From domain'} through ${d.path || 'this account'}` }),
    el('ul', { class: 'auth-list', id: 'auth-rows' }, checks.map(authRow)));
}

let rows = 0;

function authRow(c) {
  const state = AUTH_WORDS[c.state] ? c.state : 'unknown';
  const name = String(c.name ?? c.check ?? '');
  const item = el('li', { class: 'auth-row', dataset: { state, check: String(c.check ?? '') } },
    el('span', { class: 'auth-icon', 'aria-hidden': 'true' }),
    el('div', { class: 'auth-body' },
      el('p', { class: 'auth-line' },
        el('span', { class: 'visually-hidden', text: `${AUTH_WORDS[state]}: ` }),
        el('strong', { text: name }), ' ',
        el('span', { class: 'auth-words', text: String(c.words ?? '') }))));
  const fix = String(c.fix ?? '');
  if (state !== 'ok' && fix) {
    rows += 1;
    const id = `auth-fix-${rows}`;
    const box = el('textarea', { id, class: 'fix-text', readonly: true, rows: Math.max(1, Math.min(5, Math.ceil(fix.length / 80))), spellcheck: 'false' });
    box.value = fix;
    const status = el('span', { class: 'copy-status', role: 'status' });
    item.querySelector('.auth-body').append(
      el('label', { for: id, class: 'fix-label', text: `How to fix ${name}` }),
      el('div', { class: 'fix-row' }, box,
        actionButton('Copy', `how to fix ${name}`, { class: 'copy-button', onclick: () => copy(box, status) }), status));
  }
  return item;
}

/** The fix to the clipboard; where the clipboard is out of reach, the text selected for Ctrl+C. */
async function copy(box, status) {
  try {
    await navigator.clipboard.writeText(box.value);
    status.textContent = 'Copied';
  } catch {
    box.focus();
    box.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
    status.textContent = copied ? 'Copied' : 'Selected: press Ctrl+C to copy';
  }
  setTimeout(() => { status.textContent = ''; }, 4000);
}
