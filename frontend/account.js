// Account section: the channel (SMTP server or Gmail API), provider presets, server fields,
// password handling, Sign in with Google, remember boxes and the step-by-step connection test.

import { call } from './api.js';
import { initMicrosoft, refreshMicrosoft, microsoftStatus } from './microsoft.js';
import { $, el, show, errorBlock, busyLine, withBusy, uniq, plainWords, focusLost, fileToBase64 } from './dom.js';

const CUSTOM = 'custom';
const GOOGLE_PROVIDERS = new Set(['gmail', 'google-workspace']);
const MICROSOFT_PROVIDERS = new Set(['outlook', 'office365']);
// The Google sign-in under way is followed by asking the bridge (it runs on its own thread).
const POLL_MS = 400;
let google = { status: null, timer: null };

let appInfo = { providers: [], categories: {}, password_store: 'system' };
const providers = new Map();
const saved = { has_saved_password: false, password_locked: false };
let getMessageForSave = () => ({});

const f = {};

export function initAccount(info, settings, { messageForSave }) {
  appInfo = info;
  getMessageForSave = messageForSave;
  for (const id of ['provider', 'region', 'region-field', 'provider-notes', 'host', 'port', 'security', 'user', 'user-hint',
    'password', 'password-hint', 'show-password', 'passphrase', 'passphrase-field', 'passphrase-hint', 'from',
    'remember-settings', 'remember-password', 'forget-password', 'settings-status', 'verify-certificates',
    'verify-warning', 'allow-plaintext', 'plaintext-warning', 'sent-copy', 'test-connection', 'connection-result', 'advanced',
    'from-suggestion', 'check-sender', 'check-domain', 'open-log-folder', 'channel-smtp', 'channel-gmail',
    'google-block', 'google-status', 'google-scope-note', 'google-sign-in', 'google-cancel', 'google-sign-out',
    'google-client-file', 'google-progress', 'gmail-limits',
    'smtp-fields', 'smtp-oauth', 'smtp-oauth-field', 'smtp-oauth-hint', 'password-field']) {
    f[id] = document.getElementById(id);
  }

  const select = f.provider;
  select.replaceChildren();
  for (const p of info.providers || []) {
    providers.set(p.key, p);
    select.append(el('option', { value: p.key, text: p.name }));
  }
  select.append(el('option', { value: CUSTOM, text: 'Custom server' }));

  if (Array.isArray(info.security_modes) && info.security_modes.length) {
    f.security.replaceChildren(...info.security_modes.map((m) => el('option', { value: m.value, text: m.label })));
  }

  fillFromSettings(settings || {});
  wire();
  refreshGoogle();
}

function fillFromSettings(settings) {
  const account = settings.account || {};
  const key = providers.has(account.provider) ? account.provider : CUSTOM;
  f.provider.value = key;
  f.host.value = account.host ?? '';
  f.port.value = account.port ?? '';
  if (account.security) f.security.value = account.security;
  f.user.value = account.user ?? '';
  f.from.value = account.from_address ?? '';
  f['verify-certificates'].checked = account.verify_certificates !== false;
  f['allow-plaintext'].checked = !!account.allow_plaintext_auth;
  f['sent-copy'].checked = account.sent_copy !== false;
  $('#imap-host').value = (account.imap_host || '') + (account.imap_host && account.imap_port ? `:${account.imap_port}` : '');
  $('#imap-security').value = account.imap_security === 'starttls' ? 'starttls' : 'ssl';
  f['remember-settings'].checked = !!settings.remember_settings;
  f['remember-password'].checked = !!settings.remember_password;
  saved.has_saved_password = !!settings.has_saved_password;
  saved.password_locked = !!settings.password_locked;
  f['channel-gmail'].checked = account.channel === 'gmail';
  $('#channel-microsoft').checked = account.channel === 'microsoft';
  f['channel-smtp'].checked = account.channel !== 'gmail' && account.channel !== 'microsoft';
  f['smtp-oauth'].checked = account.auth === 'xoauth2';

  // The local inbox listens on a new port each run: its preset always wins.
  applyProvider(key, { fill: key === 'local-inbox' || !account.host, region: account.region });
  updateWarnings();
  updatePasswordUi();
}

/** A Test connection result about other settings than the ones now in the form goes away. */
let connectionTests = 0;
function clearConnectionResult() {
  connectionTests += 1; // a test still under way reports nothing
  const out = f['connection-result'];
  if (out.childNodes.length) show(out);
  out.removeAttribute('aria-busy');
}

function wire() {
  f.provider.addEventListener('change', () => {
    applyProvider(f.provider.value, { fill: true });
    updateChannelUi();
    clearConnectionResult();
  });
  f.region.addEventListener('change', () => {
    const p = providers.get(f.provider.value);
    if (p) f.host.value = hostFor(p, f.region.value);
    clearConnectionResult();
  });
  for (const name of ['host', 'port', 'security']) f[name].addEventListener('change', clearConnectionResult);
  f.user.addEventListener('change', () => {
    const value = f.user.value.trim();
    if (!f.from.value.trim() && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) f.from.value = value;
  });
  f['show-password'].addEventListener('click', () => {
    const showing = f.password.type === 'text';
    f.password.type = showing ? 'password' : 'text';
    f['show-password'].textContent = showing ? 'Show' : 'Hide';
    f['show-password'].setAttribute('aria-pressed', String(!showing));
  });
  f['verify-certificates'].addEventListener('change', updateWarnings);
  f['allow-plaintext'].addEventListener('change', updateWarnings);
  f['remember-settings'].addEventListener('change', () => saveSettings({ reason: 'toggle' }));
  f['remember-password'].addEventListener('change', async () => {
    updatePasswordUi();
    const result = await saveSettings({ reason: 'toggle' });
    if (!f['remember-password'].checked && result && result.ok) await forgetPassword({ quiet: true });
  });
  f['forget-password'].addEventListener('click', async () => {
    await forgetPassword({ quiet: false });
    // The button hides itself once the password is gone: keep keyboard focus nearby.
    if (focusLost()) f['remember-password'].focus();
  });
  f['test-connection'].addEventListener('click', () => withBusy(f['test-connection'], testConnection));
  f.from.addEventListener('change', () => suggestSettings());
  f['open-log-folder'].addEventListener('click', () => withBusy(f['open-log-folder'], openLogFolder));
  for (const radio of [f['channel-smtp'], f['channel-gmail'], $('#channel-microsoft')]) {
    radio.addEventListener('change', () => { updateChannelUi(); refreshGoogle(); refreshMicrosoftIfActive(); });
  }
  f['smtp-oauth'].addEventListener('change', () => { updateChannelUi(); refreshGoogle(); refreshMicrosoftIfActive(); });
  f.provider.addEventListener('change', () => {
    // Another provider: its own login (the OAuth2 choice of Gmail is not Microsoft's, and back).
    f['smtp-oauth'].checked = false;
    refreshMicrosoftIfActive();
  });
  initMicrosoft({ getCredentials, onStatus: onMicrosoftStatus });
  f['google-sign-in'].addEventListener('click', () => startSignIn());
  $('#google-read').addEventListener('click', () => startSignIn('read'));
  f['google-client-file'].addEventListener('change', async () => {
    const file = f['google-client-file'].files && f['google-client-file'].files[0];
    f['google-client-file'].value = '';
    if (file) await signInWith({ client_data_base64: await fileToBase64(file) });
  });
  f['google-cancel'].addEventListener('click', () => withBusy(f['google-cancel'], () => call('google_cancel_sign_in')));
  f['google-sign-out'].addEventListener('click', () => withBusy(f['google-sign-out'], signOut));
}

// -- the channel and Sign in with Google ------------------------------------------------------

/** Tell the Send section the limits of the way this account sends: the Gmail API's, or the
 * SMTP provider's published ones (none for a custom server). */
function announceLimits() {
  let limits = {};
  if (channel() === 'gmail') {
    const g = (google.status && google.status.limits) || {};
    limits = { per_minute: g.per_minute, per_day: g.per_day };
  } else if (channel() === 'microsoft') {
    const m = (microsoftStatus() && microsoftStatus().limits) || {};
    limits = { per_minute: m.per_minute, per_day: m.per_day };
  } else {
    const p = providers.get(f.provider.value);
    limits = (p && p.limits) || {};
  }
  // Only a change of provider or channel refills the fields: never the user's own edits.
  const key = JSON.stringify(limits);
  if (key === announcedLimits) return;
  announcedLimits = key;
  document.dispatchEvent(new CustomEvent('provider-limits', { detail: limits }));
}
let announcedLimits = null;

function channel() {
  if (f['channel-gmail'].checked) return 'gmail';
  return $('#channel-microsoft').checked ? 'microsoft' : 'smtp';
}

function smtpOauthOffered() {
  return channel() === 'smtp' && (GOOGLE_PROVIDERS.has(f.provider.value) || MICROSOFT_PROVIDERS.has(f.provider.value));
}

/** Whether this account uses the Google sign-in: the Gmail API, or SMTP with OAuth2 to Gmail. */
function googleActive() {
  return channel() === 'gmail' || (smtpOauthOffered() && f['smtp-oauth'].checked && GOOGLE_PROVIDERS.has(f.provider.value));
}

/** Whether this account uses the Microsoft sign-in: Microsoft Graph, or SMTP with OAuth2 to Outlook / 365. */
function microsoftActive() {
  return channel() === 'microsoft' || (smtpOauthOffered() && f['smtp-oauth'].checked && MICROSOFT_PROVIDERS.has(f.provider.value));
}

function refreshMicrosoftIfActive() {
  updateChannelUi();
  if (microsoftActive()) refreshMicrosoft();
}

/** The Microsoft sign-in's status: Graph sends as the signed-in account; its limits apply. */
function onMicrosoftStatus(st) {
  if (channel() === 'microsoft' && st.signed_in && st.email) {
    const current = f.from.value.trim();
    if (!current || (current.includes('@') && !current.toLowerCase().includes(st.email.toLowerCase()))) f.from.value = st.email;
  }
  updatePasswordUi();
  announceLimits();
}

function purpose() {
  return channel() === 'gmail' ? 'api' : 'smtp';
}

function updateChannelUi() {
  const gmail = channel() === 'gmail';
  const api = channel() !== 'smtp';
  f['smtp-fields'].hidden = api;
  f.advanced.hidden = api;
  $('#smtp-oauth-label').textContent = MICROSOFT_PROVIDERS.has(f.provider.value)
    ? 'Log in with Microsoft instead of a password (OAuth2)' : 'Log in with Google instead of a password (OAuth2)';
  $('#microsoft-block').hidden = !microsoftActive();
  const msAnchor = channel() === 'microsoft' ? f['channel-smtp'].closest('fieldset') : f['smtp-oauth-hint'];
  if (msAnchor.nextElementSibling !== $('#microsoft-block')) msAnchor.after($('#microsoft-block'));
  f['smtp-oauth-field'].hidden = !smtpOauthOffered();
  f['smtp-oauth-hint'].hidden = !smtpOauthOffered();
  f['password-field'].hidden = smtpOauthOffered() && f['smtp-oauth'].checked;
  f['google-block'].hidden = !googleActive();
  // The sign-in goes where it is asked for: under the channel, or under the SMTP login choice.
  const anchor = gmail ? f['channel-smtp'].closest('fieldset') : f['smtp-oauth-hint'];
  if (anchor.nextElementSibling !== f['google-block']) anchor.after(f['google-block']);
  f['gmail-limits'].hidden = !gmail;
  announceLimits();
  f['google-scope-note'].textContent = gmail
    ? 'Sends through the Gmail API as the signed-in account, with permission to send email only (it cannot read your mail).'
    : '';
  updatePasswordUi();
}

async function refreshGoogle() {
  updateChannelUi();
  if (!googleActive()) return;
  const result = await call('google_status');
  if (result.ok) renderGoogle(result.data || {});
}

function renderGoogle(st) {
  google.status = st;
  const signIn = st.sign_in || {};
  const waiting = signIn.state === 'waiting';
  const wanted = purpose() === 'smtp' ? !!st.smtp : true;
  let line = 'Not signed in with Google.';
  if (st.signed_in) {
    line = `Signed in with Google as ${st.email}${st.smtp ? ' (Gmail API and SMTP)' : ' (Gmail API)'}.`;
    if (!wanted) line += ' Sign in again to allow SMTP.';
  }
  f['google-status'].textContent = line;
  f['google-status'].dataset.signedIn = String(!!st.signed_in);
  f['google-sign-in'].hidden = waiting;
  f['google-sign-in'].textContent = st.signed_in ? 'Sign in again' : 'Sign in with Google';
  f['google-cancel'].hidden = !waiting;
  f['google-sign-out'].hidden = !st.signed_in || waiting;
  const readOffered = channel() === 'gmail' && st.signed_in && !waiting;
  $('#google-read').hidden = !readOffered || !!st.read;
  $('#google-read-hint').hidden = !readOffered || !!st.read;
  if (readOffered && st.read) f['google-status'].textContent += ` Reading bounces and replies allowed (${st.read_email || 'read-only'}).`;
  const progress = f['google-progress'];
  if (waiting) {
    const link = el('a', { href: signIn.url, target: '_blank', rel: 'noopener noreferrer', text: 'Google’s sign-in page' });
    show(progress, busyLine('Waiting for you to allow access in your browser (up to 5 minutes)…'),
      el('p', { class: 'hint' }, 'If no browser window opened, open ', link, ' in your browser on this computer.'));
  } else if (signIn.state === 'failed' && signIn.error) {
    show(progress, errorBlock(signIn.error));
  } else if (signIn.state === 'cancelled') {
    show(progress, el('p', { text: 'The sign-in was cancelled.' }));
  } else if (signIn.state === 'signed_in') {
    show(progress, el('p', { class: 'ok-line', text: `Signed in as ${signIn.email || st.email}.` }));
  } else {
    show(progress);
  }
  const limits = st.limits || {};
  f['gmail-limits'].textContent = limits.note ? `Limits: ${limits.note}` : '';
  announceLimits();
  if (channel() === 'gmail' && st.signed_in && st.email) {
    f.from.placeholder = `Your Name (sent as ${st.email})`;
    // Gmail sends as the signed-in account: another address in From would be refused.
    const current = f.from.value.trim();
    if (current.includes('@') && !current.toLowerCase().includes(st.email.toLowerCase())) f.from.value = st.email;
    else if (!current) f.from.value = st.email;
  }
  google.locked = !!st.locked;
  updatePasswordUi();
  clearTimeout(google.timer);
  if (waiting) google.timer = setTimeout(refreshGoogle, POLL_MS);
}

// A sign-in for another purpose than the channel's: 'read' (bounces and replies, gmail.readonly).
let wantedPurpose = null;

function startSignIn(forPurpose = null) {
  wantedPurpose = forPurpose;
  if (appInfo.native_dialogs) {
    withBusy(forPurpose ? $('#google-read') : f['google-sign-in'], () => signInWith({}));
  } else {
    f['google-client-file'].click(); // the page cannot read a path: the file comes from the picker
  }
}

async function signInWith(extra) {
  const result = await call('google_sign_in', { purpose: wantedPurpose || purpose(), ...getCredentials(), ...extra });
  wantedPurpose = null;
  if (!result.ok) {
    show(f['google-progress'], errorBlock(result.error));
    if (/passphrase/i.test(result.error && result.error.message)) {
      google.locked = true;
      updatePasswordUi();
      f.passphrase.focus();
    }
    return;
  }
  if (!result.data) return; // the dialog was cancelled
  await refreshGoogle();
}

async function signOut() {
  const result = await call('google_sign_out', getCredentials());
  if (!result.ok) {
    show(f['google-progress'], errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  await refreshGoogle();
  const text = d.revoked === false
    ? `Signed out here, but ${d.problem || 'Google could not be told'}: remove Bulk Mailer at myaccount.google.com/permissions.`
    : 'Signed out: the sign-in was revoked at Google and deleted here.';
  show(f['google-progress'], el('p', { class: d.revoked === false ? 'warning' : 'ok-line', text }));
  if (focusLost()) f['google-sign-in'].focus();
}

/** The provider's host for a region, as the core gives it (app_info's hosts by region). */
function hostFor(provider, region) {
  const chosen = region || provider.default_region || (provider.regions || [])[0] || '';
  return String((provider.hosts && provider.hosts[chosen]) || provider.host || '');
}

function applyProvider(key, { fill, region } = {}) {
  const p = providers.get(key);
  const regions = (p && Array.isArray(p.regions) && p.regions) || [];
  f['region-field'].hidden = regions.length === 0;
  if (regions.length) {
    f.region.replaceChildren(...regions.map((r) => el('option', { value: r, text: r })));
    f.region.value = regions.includes(region) ? region : (p.default_region || regions[0]);
  }
  if (fill && p) {
    f.host.value = hostFor(p, f.region.value);
    f.port.value = p.port ?? '';
    f.security.value = p.security || 'starttls';
    if (key === 'local-inbox') {
      f.user.value = '';
      f.password.value = '';
    }
  } else if (fill) {
    // Custom server: nothing of the preset chosen before stays (not the test inbox's 127.0.0.1).
    f.host.value = '';
    f.port.value = String((appInfo.default_ports && appInfo.default_ports.starttls) || 587);
    f.security.value = 'starttls';
  }
  // The local inbox's address is fixed by the app: show it, but do not offer to edit it.
  const fixed = key === 'local-inbox';
  f.host.readOnly = fixed;
  f.port.readOnly = fixed;
  f.security.disabled = fixed;
  // Notes, limits and username hint of the chosen provider.
  const notes = [];
  if (p) {
    const items = (p.notes || []).map((n) => el('li', { text: n }));
    if (items.length) notes.push(el('ul', { class: 'notes-list' }, items));
    if (p.limits_note) notes.push(el('p', { class: 'limits' }, el('span', { class: 'label', text: 'Limits: ' }), p.limits_note));
  } else {
    notes.push(el('p', { class: 'hint', text: 'Enter your mail server’s details as your provider gives them.' }));
  }
  show(f['provider-notes'], notes);
  announceLimits();
  const hint = (p && p.username_hint) || '';
  f['user-hint'].textContent = key === 'local-inbox' ? 'The local test inbox needs no username or password.' : hint;
  f.user.placeholder = key === 'local-inbox' ? '' : hint ? '' : 'you@example.com';
  f.from.placeholder = 'Your Name <you@example.com>';
}

function updateWarnings() {
  f['verify-warning'].hidden = f['verify-certificates'].checked;
  f['plaintext-warning'].hidden = !f['allow-plaintext'].checked;
  if (!f['verify-certificates'].checked) f.advanced.open = true;
}

function updatePasswordUi() {
  const encryptedFile = appInfo.password_store === 'encrypted-file';
  const forGoogle = encryptedFile && (googleActive() || microsoftActive()) && google.locked !== false;
  const needsPassphrase = forGoogle || saved.password_locked || (encryptedFile && f['remember-password'].checked);
  f['passphrase-field'].hidden = !needsPassphrase;
  if (forGoogle) {
    f['passphrase-hint'].textContent = 'The Google sign-in is kept encrypted under this passphrase (there is no system keyring here): the one of your saved passwords, or a new one of at least 8 characters.';
  } else if (saved.password_locked) {
    f['passphrase-hint'].textContent = 'Your saved password is locked: enter your passphrase to use it, or type the password above.';
  } else if (saved.has_saved_password) {
    f['passphrase-hint'].textContent = 'The passphrase that protects your saved password.';
  } else {
    f['passphrase-hint'].textContent = 'Choose a passphrase to protect the saved password; you will need it next time.';
  }
  f['forget-password'].hidden = !saved.has_saved_password;
  const where = encryptedFile ? 'in a file encrypted with your passphrase' : 'in the system keyring';
  if (saved.has_saved_password) {
    f['password-hint'].textContent = `A password is saved ${where}; leave this empty to use it.`;
    f.password.placeholder = '••••••••';
  } else {
    f['password-hint'].textContent = f['remember-password'].checked ? `The password will be saved ${where}.` : '';
    f.password.placeholder = '';
  }
}

/** IMAP server as typed, "host" or "host:port", as the bridge takes it. */
function imapServer() {
  const typed = $('#imap-host').value.trim();
  const m = /^(.*):(\d{1,5})$/.exec(typed);
  return m ? { imap_host: m[1], imap_port: Number(m[2]) } : { imap_host: typed, imap_port: 0 };
}

/** The account object the bridge expects. */
export function getAccount() {
  const key = f.provider.value;
  const port = Number.parseInt(f.port.value, 10);
  return {
    channel: channel(),
    auth: smtpOauthOffered() && f['smtp-oauth'].checked ? 'xoauth2' : 'password',
    provider: key === CUSTOM ? null : key,
    host: f.host.value.trim(),
    port: Number.isFinite(port) ? port : 0,
    security: f.security.value,
    user: f.user.value.trim(),
    from_address: f.from.value.trim(),
    verify_certificates: f['verify-certificates'].checked,
    allow_plaintext_auth: f['allow-plaintext'].checked,
    sent_copy: f['sent-copy'].checked,
    region: f['region-field'].hidden ? null : f.region.value,
    ...imapServer(),
    imap_security: $('#imap-security').value,
  };
}

export function getFromAddress() {
  return f.from.value.trim();
}

/** {password, passphrase} for calls that log in. */
export function getCredentials() {
  return { password: f.password.value, passphrase: f['passphrase-field'].hidden ? '' : f.passphrase.value };
}

export function providerKey() {
  if (channel() === 'microsoft') return (microsoftStatus() && microsoftStatus().provider) || 'office365';
  return channel() === 'gmail' ? 'gmail' : f.provider.value;
}

/** How many connections the chosen provider suits (1 for a mailbox or an unknown server). */
export function presetConnections() {
  const p = providers.get(f.provider.value);
  return p && Number.isInteger(p.connections) ? p.connections : 1;
}

/** Fix steps for a category: the general ones, then the chosen provider's advice. */
export function fixStepsFor(category, providerKeyAtStart = channel() === 'gmail' ? 'gmail' : f.provider.value) {
  const general = (appInfo.categories && appInfo.categories[category] && appInfo.categories[category].fix) || [];
  const p = providers.get(providerKeyAtStart);
  const advice = (p && p.advice && p.advice[category]) || [];
  return uniq([...general, ...advice]);
}

export function categoryTitle(category) {
  const c = appInfo.categories && appInfo.categories[category];
  return (c && c.title) || category || '';
}

export function categoryCause(category) {
  const c = appInfo.categories && appInfo.categories[category];
  return (c && c.cause) || '';
}

/** Save settings when a remember box is checked (or always, when a box was just toggled). */
export async function saveSettings({ reason } = {}) {
  const rememberSettings = f['remember-settings'].checked;
  const rememberPassword = f['remember-password'].checked;
  if (reason !== 'toggle' && !rememberSettings && !rememberPassword) return null;
  const { password, passphrase } = getCredentials();
  // A new password for the encrypted file needs its passphrase first: save the rest now.
  const waitForPassphrase = appInfo.password_store === 'encrypted-file' && rememberPassword && password && !passphrase;
  const result = await call('save_settings', {
    account: getAccount(),
    message: getMessageForSave(),
    remember_settings: rememberSettings,
    remember_password: rememberPassword,
    password: rememberPassword && !waitForPassphrase ? password : '',
    passphrase,
  });
  const status = f['settings-status'];
  if (!result.ok) {
    show(status, el('p', { class: 'label', text: 'Settings were not saved:' }), errorBlock(result.error));
    return result;
  }
  if (waitForPassphrase) {
    show(status, el('p', { class: 'hint', text: 'Enter a passphrase to protect the saved password; it is saved when you test the connection or send.' }));
    return result;
  }
  if (result.data && typeof result.data.has_saved_password === 'boolean') {
    saved.has_saved_password = result.data.has_saved_password;
    if (saved.has_saved_password && password) saved.password_locked = false;
  } else if (rememberPassword && password) {
    saved.has_saved_password = true;
    saved.password_locked = false;
  }
  updatePasswordUi();
  if (reason === 'toggle') {
    show(status, el('p', { class: 'ok-line', text: rememberSettings || rememberPassword ? 'Settings saved.' : 'Settings will not be remembered.' }));
  } else {
    show(status);
  }
  return result;
}

async function forgetPassword({ quiet }) {
  const result = await call('forget_password', { account: getAccount() });
  const status = f['settings-status'];
  if (!result.ok) {
    show(status, errorBlock(result.error));
    return;
  }
  saved.has_saved_password = false;
  saved.password_locked = false;
  updatePasswordUi();
  if (!quiet) show(status, el('p', { class: 'ok-line', text: 'The saved password was deleted.' }));
}

const STEP_NAMES = { connect: 'Connect', dns: 'DNS', tcp: 'TCP connection', tls: 'TLS', certificate: 'Certificate',
  ehlo: 'Server capabilities (EHLO)', auth: 'Login (AUTH)' };
const STATUS_WORDS = { ok: 'ok', failed: 'failed', warning: 'warning', skipped: 'skipped' };
// EHLO keywords that start a feature; other words are parameters of the one before
// ("AUTH PLAIN LOGIN", "SIZE 33554432").
const EHLO_KEYWORDS = new Set(['8bitmime', 'auth', 'binarymime', 'burl', 'chunking', 'deliverby', 'dsn',
  'enhancedstatuscodes', 'etrn', 'expn', 'future-release', 'help', 'limits', 'mt-priority', 'mtrk',
  'no-soliciting', 'pipelining', 'requiretls', 'size', 'smtputf8', 'starttls', 'utf8', 'verb', 'vrfy',
  'xclient', 'xexch50', 'xforward', 'x-link2state', 'xusr', 'clientid', 'atrn', 'onex', 'turn']);

/**
 * The EHLO step in words: "Server features: 8BITMIME, SIZE 33554432 (messages up to 34 MB),
 * STARTTLS, AUTH PLAIN LOGIN" (HELP and other noise left out). From the step's data when the
 * bridge gives it, else from a raw feature list ("8bitmime help size"), else the detail as is.
 */
export function serverFeatures(step, features) {
  const data = step && step.data && typeof step.data === 'object' ? step.data : null;
  let list = [];
  if (data && ('auth' in data || 'size_limit' in data)) {
    if (data['8bitmime']) list.push('8BITMIME');
    if (Number(data.size_limit) > 0) {
      const mb = data.size_limit / 1e6;
      list.push(`SIZE ${data.size_limit} (messages up to ${mb >= 10 ? Math.round(mb) : Number(mb.toFixed(1))} MB)`);
    }
    if (data.starttls) list.push('STARTTLS');
    const auth = Array.isArray(data.auth) ? data.auth.map((m) => String(m).toUpperCase()) : [];
    if (auth.length) list.push(`AUTH ${auth.join(' ')}`);
    if (data.smtputf8) list.push('SMTPUTF8');
    if (data.pipelining) list.push('PIPELINING');
    const text = list.length ? `Server features: ${list.join(', ')}` : 'The server lists no extra features.';
    return auth.length ? text : `${text}. It offers no login (AUTH).`;
  }
  const detail = String((step && step.detail) || '');
  if (features && typeof features === 'object' && !Array.isArray(features) && Object.keys(features).length) {
    list = Object.entries(features).map(([name, params]) => [name, String(params ?? '').trim()].filter(Boolean).join(' '));
  } else if (/^[a-z0-9 =-]*$/.test(detail)) {
    for (const word of detail.split(/\s+/).filter(Boolean)) {
      const lower = word.toLowerCase();
      if (!list.length || EHLO_KEYWORDS.has(lower) || lower.startsWith('x-')) list.push(word);
      else list[list.length - 1] += ` ${word}`;
    }
  } else {
    return plainWords(detail);
  }
  list = list.map((f) => f.toUpperCase()).filter((f) => f !== 'HELP' && !f.startsWith('HELP '));
  return list.length ? `Server features: ${list.join(', ')}` : 'The server lists no extra features.';
}

function stepStatus(s) {
  if (typeof s.status === 'string' && STATUS_WORDS[s.status]) return s.status;
  return s.ok ? 'ok' : 'failed';
}

function stepsList(steps, features) {
  if (!Array.isArray(steps) || !steps.length) return null;
  return el('ol', { class: 'steps' }, steps.map((s) => {
    const seconds = typeof s.seconds === 'number' ? formatSeconds(s.seconds) : '';
    const name = String(s.name || '');
    const status = stepStatus(s);
    const detail = name === 'ehlo' && status !== 'failed' ? serverFeatures(s, features) : plainWords(s.detail || '');
    return el('li', { class: `step step-${status}`, dataset: { ok: String(status !== 'failed'), step: name, status } },
      el('span', { class: 'step-name', text: s.title || STEP_NAMES[name] || name }), ' ',
      el('span', { class: `badge badge-${status}`, text: STATUS_WORDS[status] }),
      detail ? el('span', { class: 'step-detail', text: ' ' + detail }) : null,
      seconds ? el('span', { class: 'step-seconds', text: ' (' + seconds + ')' }) : null);
  }));
}

/** TLS version and cipher of a working connection: from the result, or from its TLS step. */
function tlsOf(d) {
  if (d.tls_version) return { version: d.tls_version, cipher: d.cipher };
  const step = Array.isArray(d.steps) ? d.steps.find((s) => s && s.name === 'tls') : null;
  if (step && stepStatus(step) === 'ok') {
    const data = step.data || {};
    return { version: data.version || 'TLS', cipher: data.cipher };
  }
  return null;
}

function formatSeconds(seconds) {
  if (seconds < 0.01) return 'under 0.01 s';
  return `${seconds < 10 ? seconds.toFixed(2) : Math.round(seconds)} s`;
}

async function testConnection() {
  const out = f['connection-result'];
  const test = ++connectionTests;
  out.setAttribute('aria-busy', 'true');
  show(out, busyLine('Testing the connection…'));
  try {
    await saveSettings();
    const result = await call('test_connection', {
      account: getAccount(), ...getCredentials(),
      check_sender: f['check-sender'].checked, check_domain: f['check-domain'].checked,
    });
    if (test !== connectionTests) return; // the settings changed meanwhile: this result no longer applies
    if (result.ok) {
      const d = result.data || {};
      const parts = [stepsList(d.steps, d.features)];
      const tls = tlsOf(d);
      let line = tls ? 'Connection works.' : 'Connection works, with no encryption.';
      if (tls) line += ` Encrypted with ${tls.version}${tls.cipher ? ` (${tls.cipher})` : ''}.`;
      if (d.authenticated_as) line += ` Logged in as ${d.authenticated_as}.`;
      if (d.channel === 'gmail') line = `Google sign-in works: sending through the Gmail API as ${d.authenticated_as}.`;
      if (d.channel === 'microsoft') line = `Microsoft sign-in works: sending through Microsoft Graph as ${d.authenticated_as}.`;
      parts.unshift(el('p', { class: 'ok-line', text: line }));
      if (d.certificate_subject) parts.push(el('p', { class: 'hint', text: `Certificate: ${d.certificate_subject}` }));
      if (d.verify_certificates === false) parts.push(el('p', { class: 'warning', text: 'The certificate was not verified (Verify certificates is off).' }));
      show(out, parts);
    } else {
      const e = result.error || {};
      show(out, el('p', { class: 'fail-line', text: 'Connection failed.' }), stepsList(e.steps), errorBlock(e));
    }
  } finally {
    if (test === connectionTests) out.removeAttribute('aria-busy');
  }
}

// -- settings from the From address ---------------------------------------------------------

let lastDetected = '';
// The suggestion appears above the buttons: showing it while a click is under way would move
// the button away from the pointer between press and release, so it waits for the release.
let pointerIsDown = false;
let pendingRender = null;
document.addEventListener('pointerdown', () => { pointerIsDown = true; }, true);
document.addEventListener('pointerup', () => {
  pointerIsDown = false;
  if (pendingRender) setTimeout(() => { const r = pendingRender; pendingRender = null; if (r) r(); }, 0);
}, true);

function whenPointerFree(render) {
  if (pointerIsDown) pendingRender = render;
  else render();
}

function domainOf(text) {
  const m = /@([^\s<>@]+?)>?\s*$/.exec(text || '');
  return m ? m[1].toLowerCase() : '';
}

/** Offer server settings for the From address's domain; the user confirms with a button. */
async function suggestSettings() {
  const box = f['from-suggestion'];
  const domain = domainOf(f.from.value);
  if (!domain || domain === lastDetected) return;
  lastDetected = domain;
  const result = await call('detect_settings', { address: f.from.value });
  whenPointerFree(() => renderSuggestion(result, domain));
}

function renderSuggestion(result, domain) {
  const box = f['from-suggestion'];
  const found = (result.ok && result.data && result.data.suggestions) || [];
  const best = found[0];
  const current = { host: f.host.value.trim(), port: Number(f.port.value), security: f.security.value };
  if (!best || (best.host === current.host && best.port === current.port && best.security === current.security)) {
    box.hidden = true;
    show(box);
    return;
  }
  const security = best.security === 'ssl' ? 'SSL/TLS' : best.security === 'starttls' ? 'STARTTLS' : 'no encryption';
  const use = el('button', { type: 'button', text: 'Use these settings' });
  const keep = el('button', { type: 'button', class: 'link-button', text: 'Keep mine' });
  use.addEventListener('click', () => {
    if (best.provider && providers.has(best.provider)) {
      f.provider.value = best.provider;
      applyProvider(best.provider, { fill: true });
    } else {
      f.provider.value = CUSTOM;
      applyProvider(CUSTOM, { fill: false });
    }
    f.host.value = best.host;
    f.port.value = String(best.port);
    f.security.value = best.security;
    clearConnectionResult();
    box.hidden = true;
    show(box);
    f.user.focus();
  });
  keep.addEventListener('click', () => { box.hidden = true; show(box); f.from.focus(); });
  box.hidden = false;
  show(box,
    el('p', { text: `Suggested for ${domain}: ${best.host}, port ${best.port}, ${security}.` }),
    el('p', { class: 'hint', text: `Why: ${best.reason}.` }),
    el('p', { class: 'actions' }, use, ' ', keep));
}

async function openLogFolder() {
  const result = await call('open_log_folder');
  const out = f['connection-result'];
  if (!result.ok) { show(out, errorBlock(result.error)); return; }
  const d = result.data || {};
  show(out, el('p', { text: d.opened ? `Opened the log folder: ${d.path}` : `The log is in ${d.path}` }));
}
