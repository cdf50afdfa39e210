// Sign in with Microsoft (Account): for the Microsoft Graph channel, or SMTP with OAuth2 to
// Outlook.com / Microsoft 365. The core runs the sign-in (MSAL, in the system browser or with a
// device code) and keeps the tokens; this shows where it stands.

import { call } from './api.js';
import { $, el, show, errorBlock, withBusy, focusLost } from './dom.js';

const POLL_MS = 1000;

let deps = null;
let status = null;
let timer = null;

/** deps: getCredentials(), onStatus(status) (the account's limits and From follow it). */
export function initMicrosoft(dependencies) {
  deps = dependencies;
  $('#microsoft-sign-in').addEventListener('click', (event) => withBusy(event.currentTarget, signIn));
  $('#microsoft-cancel').addEventListener('click', (event) => withBusy(event.currentTarget, async () => {
    await call('microsoft', { action: 'cancel' });
    await refreshMicrosoft();
  }));
  $('#microsoft-sign-out').addEventListener('click', (event) => withBusy(event.currentTarget, signOut));
}

/** The last status the core gave (null before the first). */
export function microsoftStatus() {
  return status;
}

/** Ask the core where the Microsoft sign-in stands; polls while one waits for the browser. */
export async function refreshMicrosoft() {
  clearTimeout(timer);
  const result = await call('microsoft', { action: 'status' });
  if (!result.ok) {
    show($('#microsoft-progress'), errorBlock(result.error));
    return;
  }
  status = result.data || {};
  render(status);
  if (deps && deps.onStatus) deps.onStatus(status);
  const s = status.sign_in || {};
  if (s.state === 'waiting' && s.purpose === 'microsoft') timer = setTimeout(refreshMicrosoft, POLL_MS);
}

function render(st) {
  const kind = st.consumer ? 'personal account' : 'work or school account';
  const allows = [st.graph ? 'Microsoft Graph' : null, st.smtp ? 'SMTP' : null].filter(Boolean).join(' and ');
  $('#microsoft-status').textContent = st.signed_in
    ? `Signed in with Microsoft as ${st.email} (${kind}${allows ? `; ${allows}` : ''}).`
    : 'Not signed in with Microsoft.';
  $('#microsoft-status').dataset.signedIn = String(!!st.signed_in);
  const profile = st.profile || {};
  if (!$('#microsoft-client-id').value && profile.client_id) $('#microsoft-client-id').value = profile.client_id;
  if (!$('#microsoft-tenant').value && profile.tenant) $('#microsoft-tenant').value = profile.tenant;
  const s = st.sign_in && st.sign_in.purpose === 'microsoft' ? st.sign_in : {};
  const waiting = s.state === 'waiting';
  $('#microsoft-sign-in').hidden = waiting;
  $('#microsoft-sign-in').textContent = st.signed_in ? 'Sign in again' : 'Sign in with Microsoft';
  $('#microsoft-cancel').hidden = !waiting;
  $('#microsoft-sign-out').hidden = !st.signed_in || waiting;
  const progress = $('#microsoft-progress');
  if (waiting && s.user_code) {
    show(progress, el('p', { class: 'device-code', text: s.message || `Open ${s.url} on any device and enter the code ${s.user_code}.` }));
  } else if (waiting) {
    show(progress, el('p', { class: 'busy' }, 'Your browser shows Microsoft\u2019s sign-in. If it did not open, open ',
      el('a', { href: s.url, target: '_blank', rel: 'noreferrer', text: 'this page' }), '.'));
  } else if (s.state === 'failed' && s.error) {
    show(progress, errorBlock(s.error));
  } else if (s.state === 'cancelled') {
    show(progress, el('p', { class: 'hint', text: 'Sign-in cancelled.' }));
  } else if (s.state === 'signed_in') {
    show(progress, el('p', { class: 'ok-line', text: st.limits && st.limits.note ? `Signed in. ${st.limits.note}` : 'Signed in.' }));
  }
}

async function signIn() {
  const result = await call('microsoft', {
    action: 'sign_in', client_id: $('#microsoft-client-id').value, tenant: $('#microsoft-tenant').value,
    device_code: $('#microsoft-device-code').checked, ...deps.getCredentials(),
  });
  if (!result.ok) {
    show($('#microsoft-progress'), errorBlock(result.error));
    return;
  }
  await refreshMicrosoft();
}

async function signOut() {
  const result = await call('microsoft', { action: 'sign_out', ...deps.getCredentials() });
  if (!result.ok) {
    show($('#microsoft-progress'), errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  await refreshMicrosoft();
  show($('#microsoft-progress'), el('p', { class: 'ok-line', text: d.apps_page
    ? `Signed out here. To withdraw the app's access at Microsoft too: ${d.apps_page}`
    : 'Signed out here.' }));
  if (focusLost()) $('#microsoft-sign-in').focus();
}
