// Send section: start / pause / resume / cancel, the progress bar, counts, rate and time
// remaining (from event timestamps), and the end-of-run summary in the Activity log.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, confirmBox, formatDuration, formatRate, plural, focusLost, plainWords } from './dom.js';
import * as log from './log.js';
import { problemsList, problemCount } from './compose.js';
import { meterWords } from './review.js';

const ACTIVE = new Set(['running', 'paused']);
const BUSY = new Set(['running', 'paused', 'cancelling']); // Send stays disabled
const ENDED = new Set(['finished', 'cancelled', 'failed']);
const RATE_WINDOW = 100; // completions used for the rate

let deps = null;
let state = 'idle';
let stateCampaign = null; // campaign of the last state we were told about
let starting = false;
let total = 0;
let meter = null; // the account's last 24 hours as the run began (the core's meter)
let completions = [];
let finalRatePerMin = null;
let endInfo = null; // {error, summary} of the run that ended, for the status line
// Paused time of the current run (Date.now() spans), so rates count sending time only.
let pauses = [];
let pauseStart = null;
// The user is working the Send section's buttons: when the one they used gets disabled or
// hidden, focus follows the run (Send -> Pause -> Resume ... -> Send) instead of dropping
// to <body>.
let focusWanted = false;
// A past campaign being resumed from History (same id as a run this page may have shown).
let restarting = null;

let retryDefaultsWords = '';
// A run that stopped to wait for its send window or a recipient's local time: why and until when.
let waitWords = '';
const BY_ITSELF = 'it goes by itself while the app is open or the timer is installed';
// The core's review says nothing is missing (Send stays disabled until then).
let ready = false;

/** The review's answer: Send is enabled only when nothing is missing. */
export function setReady(value) {
  ready = Boolean(value);
  setState(state);
}

/** A time is set in When: the Send button reads Schedule. */
export function setScheduled(scheduled) {
  const button = $('#send');
  const words = scheduled ? 'Schedule' : 'Send';
  const text = [...button.childNodes].find((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  if (text && text.textContent !== words) text.textContent = words;
}

/** The retry fields start at the core's defaults (app_info's retry_defaults): one definition. */
function setRetryDefaults(d) {
  if (!d) return;
  const values = { base_s: d.base_s, cap_s: d.cap_s, max_attempts: d.max_attempts, max_age_h: d.max_age_s / 3600,
    max_failures_in_a_row: d.max_failures_in_a_row };
  for (const [key, selector] of RETRY_FIELDS) if (Number.isFinite(values[key])) $(selector).value = String(values[key]);
  retryDefaultsWords = `The defaults: first retry after ${values.base_s} s, longest wait ${values.cap_s} s, ${values.max_attempts} tries, give up after ${values.max_age_h} hours, stop after ${values.max_failures_in_a_row} failures in a row.`;
}

export function initSend(dependencies, message, retryDefaults) {
  deps = dependencies;
  setRetryDefaults(retryDefaults);
  if (message && Number.isFinite(message.delay_ms)) $('#delay').value = String(message.delay_ms);
  if (message && Number.isInteger(message.connections)) setConnections(message.connections);
  $('#send').addEventListener('click', () => startCampaign());
  $('#pause').addEventListener('click', () => control('pause_campaign'));
  $('#resume').addEventListener('click', () => control('resume_campaign'));
  $('#cancel').addEventListener('click', () => control('cancel_campaign'));
  const section = $('#send-section');
  const isSendButton = (node) => node instanceof Element && section.contains(node) && node.matches('button');
  document.addEventListener('focusin', (event) => { focusWanted = isSendButton(event.target); });
  document.addEventListener('pointerdown', (event) => {
    if (!isSendButton(event.target instanceof Element ? event.target.closest('button') : null)) focusWanted = false;
  }, true);
  log.onFlush((snapshot) => {
    completions.push(...snapshot.completed);
    if (completions.length > RATE_WINDOW * 2) completions = completions.slice(-RATE_WINDOW);
    renderCounts(snapshot.counts);
  });
  setState('idle');
  renderCounts(log.getCounts());
  setLimits(providerLimits);
  for (const [, selector] of LIMIT_FIELDS) $(selector).addEventListener('input', summariseLimits);
  for (const [, selector] of RETRY_FIELDS) $(selector).addEventListener('input', summariseRetry);
  summariseRetry();
}

// The Account section announces its provider's limits, possibly before this section is set up.
let providerLimits = {};
document.addEventListener('provider-limits', (event) => {
  providerLimits = event.detail || {};
  if (deps) setLimits(providerLimits);
});

/** A sending limit or a retry holds the next message: say until when, and why. */
export function handleWait(ev) {
  const until = new Date(ev.until);
  if (Number.isNaN(until.getTime())) return;
  const line = $('#next-send');
  const at = until.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const day = until.toDateString() === new Date().toDateString() ? '' : ` on ${until.toLocaleDateString()}`;
  line.textContent = `Next message at ${at}${day} (${plainWords(String(ev.reason || 'waiting'))}).`;
  line.hidden = false;
}

function clearWait() {
  const line = $('#next-send');
  line.hidden = true;
  line.textContent = '';
}

const LIMIT_FIELDS = [['per_second', '#limit-second', 'a second'], ['per_minute', '#limit-minute', 'a minute'],
  ['per_hour', '#limit-hour', 'an hour'], ['per_day', '#limit-day', 'a day']];

/** Fill the limit fields with a provider's published limits. */
function setLimits(limits) {
  for (const [key, selector] of LIMIT_FIELDS) {
    const v = limits && limits[key];
    $(selector).value = Number.isFinite(v) && v > 0 ? String(v) : '';
  }
  summariseLimits();
}

function summariseLimits() {
  const parts = [];
  for (const [, selector, words] of LIMIT_FIELDS) {
    const v = Number($(selector).value);
    if ($(selector).value.trim() !== '' && Number.isFinite(v) && v > 0) parts.push(`${v} ${words}`);
  }
  $('#limits-summary').textContent = parts.length ? parts.join(', ') : 'none';
}

const RETRY_FIELDS = [['base_s', '#retry-base', 1, true], ['cap_s', '#retry-cap', 1, true],
  ['max_attempts', '#retry-attempts', 1, true], ['max_age_h', '#retry-max-age', 0.1, false],
  ['max_failures_in_a_row', '#max-failures', 0, true]];

/** The retry settings as the bridge takes them, or {error, label, min} for the first bad field. */
export function getRetry() {
  const retry = {};
  for (const [key, selector, min, whole] of RETRY_FIELDS) {
    const raw = $(selector).value.trim();
    const v = Number(raw);
    if (raw === '' || !Number.isFinite(v) || v < min || (whole && !Number.isInteger(v))) {
      return { error: selector, label: $(`label[for="${selector.slice(1)}"]`).textContent, min, whole };
    }
    retry[key] = v;
  }
  if (retry.cap_s < retry.base_s) return { error: '#retry-cap', label: 'Longest wait (s)', min: retry.base_s, whole: true };
  return { retry };
}

function summariseRetry() {
  const r = getRetry().retry;
  $('#retry-summary').textContent = r
    ? `up to ${plural(r.max_attempts, 'try', 'tries')}, ${r.max_failures_in_a_row ? `stop after ${r.max_failures_in_a_row} failures in a row` : 'never stop for failures'}`
    : 'check the values';
}

/** The limits as the bridge takes them, or {error} naming the field that is not a number. */
export function getLimits() {
  const limits = {};
  for (const [key, selector] of LIMIT_FIELDS) {
    const raw = $(selector).value.trim();
    if (raw === '') continue;
    const v = Number(raw);
    const whole = key !== 'per_second';
    if (!Number.isFinite(v) || v < 0 || (whole && !Number.isInteger(v))) {
      return { error: selector, label: $(`label[for="${selector.slice(1)}"]`).textContent };
    }
    if (v > 0) limits[key] = v;
  }
  return { limits };
}

/** The Connections setting, or null when it is not a whole number from 1 to 16. */
export function getConnections() {
  const n = Number($('#connections').value);
  return Number.isInteger(n) && n >= 1 && n <= 16 ? n : null;
}

/** Set Connections (the chosen provider's default, or a saved value). */
export function setConnections(n) {
  if (Number.isInteger(n) && n >= 1 && n <= 16) $('#connections').value = String(n);
}

export function getDelay() {
  const n = Number($('#delay').value);
  return Number.isInteger(n) && n >= 0 && n <= 3600000 ? n : null;
}

function newRun(campaign) {
  // A past campaign resumed from History keeps its id: its first event starts a new run.
  const again = !!campaign && campaign === restarting;
  if (!campaign || (!again && campaign === log.currentCampaign())) return;
  if (again) {
    restarting = null;
    stateCampaign = null; // its old end state must not hold back the new run's progress
  }
  log.setCampaign(campaign, { force: again });
  completions = [];
  finalRatePerMin = null;
  endInfo = null;
  pauses = [];
  pauseStart = null;
  total = 0;
  $('#summary').hidden = true;
  show($('#summary'));
  show($('#sent-copy-status'));
}

/** History cancelled a campaign nobody was sending: if it is the one shown here (scheduled or
 * waiting), the Send section says so instead of its old time. */
export function notSending(campaign) {
  if (campaign !== stateCampaign || !['scheduled', 'waiting'].includes(state)) return;
  show($('#send-status'));
  clearWait();
  setState('cancelled');
}

/** History is about to start a run of a past campaign (resume keeps the campaign's id). */
export function expectRun(campaign) {
  restarting = campaign || null;
}

/** A run started from History: the Send section and the Activity log follow it like a Send. */
export function runStarted(campaign, runTotal) {
  if (!campaign) {
    restarting = null;
    return;
  }
  newRun(campaign);
  restarting = null;
  deps.rememberProvider();
  if (Number.isFinite(runTotal)) total = runTotal;
  show($('#send-status'));
  if (stateCampaign !== campaign) {
    stateCampaign = campaign;
    setState('running');
  } else {
    setState(state);
  }
  renderCounts(log.getCounts());
}

/** True while a run is active here (History's buttons wait). */
export function isBusy() {
  return starting || BUSY.has(state);
}

/** An 'email-progress' event. */
export function handleProgress(ev) {
  newRun(ev.campaign);
  if (ev.status === 'sending') clearWait();
  if (Number.isFinite(ev.total)) total = ev.total;
  if (!BUSY.has(state) && !(ENDED.has(state) && stateCampaign === ev.campaign)) {
    stateCampaign = ev.campaign;
    setState('running');
  }
  log.queueProgress(ev);
}

function ended(stateName, summary, error) {
  endInfo = { error: error || null, summary: summary || null };
  finalRatePerMin = finalRate(summary);
  log.setEnded(stateName, summary);
}

/** A 'campaign-state' event. */
export function handleState(ev) {
  newRun(ev.campaign);
  if (ev.meter) meter = ev.meter;
  if (ENDED.has(ev.state) || ev.state === 'waiting') clearWait();
  if (ev.state === 'waiting') {
    // Stopped until its window opens (or a recipient's local time): it goes on by itself.
    log.flush();
    waitWords = plainWords(String((ev.error && ev.error.message) || 'waiting for its time'));
    stateCampaign = ev.campaign ?? stateCampaign;
    setState('waiting');
    deps.onRunEnded(ev);
    return;
  }
  if (ev.state === 'scheduled') {
    stateCampaign = ev.campaign ?? stateCampaign;
    if (ev.words) show($('#send-status'), el('p', { class: 'ok-line', id: 'scheduled-line', text: `${ev.words}; ${BY_ITSELF}.` }));
    setState('scheduled');
    deps.onRunEnded(ev);
    return;
  }
  stateCampaign = ev.campaign ?? stateCampaign;
  if (Number.isFinite(ev.total)) total = ev.total;
  if (ENDED.has(ev.state)) {
    log.flush();
    const s = ev.summary;
    if (s) {
      log.setCounts(s);
      if (Number.isFinite(s.total)) total = s.total;
    }
    ended(ev.state, s, ev.error);
  }
  setState(ev.state);
  if (ENDED.has(ev.state)) {
    renderCounts(log.getCounts());
    renderSummary(ev);
    deps.onRunEnded(ev);
  }
}

/** Bring the page in line with the bridge (on load, and after the event stream reconnects). */
export async function syncState() {
  const result = await call('campaign_state');
  if (!result.ok || !result.data) return;
  const d = result.data;
  if (!d.campaign) return;
  newRun(d.campaign);
  stateCampaign = d.campaign;
  if (Number.isFinite(d.total)) total = d.total;
  if (d.meter) meter = d.meter;
  log.setCounts(d.counts);
  if (ENDED.has(d.state)) ended(d.state, d.summary, d.error);
  if (d.state === 'waiting') waitWords = plainWords(String((d.error && d.error.message) || 'waiting for its time'));
  setState(d.state || 'idle');
  if (ENDED.has(d.state) && d.summary) {
    renderSummary({ state: d.state, summary: d.summary, error: d.error || null });
  }
  renderCounts(log.getCounts());
}

function setState(next) {
  state = next || 'idle';
  const active = ACTIVE.has(state);
  const paused = state === 'paused';
  const now = Date.now();
  if (paused && pauseStart === null) pauseStart = now;
  if (!paused && pauseStart !== null) {
    pauses.push([pauseStart, now]);
    pauseStart = null;
  }
  const focused = document.activeElement;
  $('#send').disabled = BUSY.has(state) || starting || !ready;
  $('#pause').hidden = paused;
  $('#pause').disabled = state !== 'running';
  $('#resume').hidden = !paused;
  $('#resume').disabled = !paused;
  $('#cancel').disabled = !active;
  // Keep keyboard focus on the controls while they swap and disable.
  if (focused === $('#pause') && paused) $('#resume').focus();
  else if (focused === $('#resume') && !paused && state === 'running') $('#pause').focus();
  else if (focusWanted && focusLost()) {
    let target = null;
    if (state === 'running') target = $('#pause');
    else if (paused) target = $('#resume');
    else if (!BUSY.has(state) && !starting) target = $('#send');
    if (target && !target.disabled && !target.hidden) target.focus();
  }
  document.body.dataset.campaignState = state;
  // Nothing is being sent yet: no progress bar for a campaign that starts later.
  $('.progress-row').hidden = state === 'scheduled';
  $('#counts').hidden = state === 'scheduled';
  renderCounts(log.getCounts());
  const line = $('#send-state');
  line.classList.toggle('fail-line', state === 'failed' || (state === 'finished' && !!(endInfo && endInfo.error)));
  const text = stateWords(state);
  if (line.textContent !== text) line.textContent = text;
}

function errorWords(error) {
  if (!error) return '';
  const title = error.title || (error.category ? deps.categoryTitle(error.category) : '');
  const message = plainWords(error.message || '');
  if (title && message) return `${title} — ${message}`;
  return title || message;
}

function stateWords(current) {
  const s = (endInfo && endInfo.summary) || {};
  const error = endInfo && endInfo.error;
  const n = (v) => (Number.isFinite(v) ? v : 0);
  const tally = () => {
    const parts = [`${n(s.sent)} sent`];
    if (n(s.failed)) parts.push(`${n(s.failed)} failed`);
    if (n(s.uncertain)) parts.push(`${n(s.uncertain)} uncertain`);
    if (n(s.skipped) + n(s.deferred)) parts.push(`${n(s.skipped) + n(s.deferred)} not sent`);
    return parts.join(', ');
  };
  switch (current) {
    case 'running': return 'Sending…';
    case 'paused': return 'Paused. Resume to continue, or Cancel.';
    case 'waiting': return `Waiting: ${waitWords}; ${BY_ITSELF}.`;
    case 'cancelling': return 'Cancelling after the current message…';
    case 'cancelled': return endInfo && endInfo.summary ? `Cancelled: ${tally()}.` : 'Cancelled.';
    case 'failed': {
      const words = errorWords(error) || (s.stopped ? deps.categoryTitle(String(s.stopped)) : 'the run stopped because of an error');
      return `Failed: ${words}`;
    }
    case 'finished':
      if (error) return `Stopped early: ${errorWords(error)}`;
      return endInfo && endInfo.summary ? `Finished: ${tally()}.` : 'Finished.';
    default: return '';
  }
}

/**
 * The core says this list already went to this account in the last 30 days (a practice run
 * into the local test inbox never counts): ask in the page (window.confirm may not work in the
 * webview) whether to send to everyone again, only to those not yet sent, or not at all.
 */
function confirmResend(earlier, options, question = '') {
  const out = $('#send-status');
  const when = new Date(earlier.created);
  const date = Number.isNaN(when.getTime()) ? earlier.created : when.toLocaleString();
  const again = el('button', { type: 'button', id: 'send-again', text: 'Send to everyone again' });
  const rest = earlier.not_yet > 0
    ? el('button', { type: 'button', id: 'send-not-yet', class: 'primary', text: 'Send only to those not yet sent' })
    : null;
  const cancel = el('button', { type: 'button', id: 'cancel-resend', text: 'Cancel', 'aria-describedby': 'resend-cancel-hint' });
  const notYet = earlier.not_yet > 0 ? ` ${plural(earlier.not_yet, 'recipient')} of this list did not get it yet.` : ' Everyone on this list got it.';
  const box = el('div', { class: 'confirm', id: 'resend-confirm', role: 'group', 'aria-labelledby': 'resend-question' },
    el('p', { id: 'resend-question', class: 'confirm-question',
      text: `This list was already sent through this account on ${date} (${plural(earlier.sent, 'message')} sent, campaign ${earlier.campaign}).${notYet}` }),
    question ? el('p', { class: 'confirm-question', text: question }) : null,
    el('p', { id: 'resend-cancel-hint', class: 'hint', text: 'Cancel sends nothing. To send something new, change the list or the account.' }),
    el('div', { class: 'actions' }, again, rest, cancel));
  const cancelIt = () => {
    show(out, el('p', { class: 'hint', text: 'Nothing sent.' }));
    $('#send').focus();
  };
  const go = (extra) => {
    show(out);
    $('#send').focus();
    focusWanted = true;
    startCampaign({ ...options, ...extra, confirmed: true });
  };
  again.addEventListener('click', () => go({}));
  if (rest) rest.addEventListener('click', () => go({ skipSentIn: earlier.campaign }));
  cancel.addEventListener('click', cancelIt);
  box.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      cancelIt();
    }
  });
  show(out, box);
  // The safe choice has focus: a second Enter does not send the list a second time.
  cancel.focus();
}

/** The core's answer: did this list already go to this account lately? (null: no, or unknown) */
async function sentBefore() {
  const answer = await call('already_sent', { account: deps.getAccount() });
  return answer.ok && answer.data && answer.data.campaign ? answer.data.campaign : null;
}

/**
 * Rows whose message cannot be built: offer to send everyone else. Only when every problem
 * names its row (a mistake in the template itself fails every row: skipping cannot help).
 */
function skipOffer(problems, rowCount, skipSentIn = null) {
  if (!rowCount || !problems.every((p) => p && p.line !== null && p.line !== undefined)) return null;
  // Every row fails: there would be no one left to send to.
  const listed = deps.recipientCount ? deps.recipientCount() : null;
  if (Number.isFinite(listed) && rowCount >= listed) return null;
  const button = el('button', { type: 'button', id: 'skip-problem-rows', 'aria-describedby': 'skip-problem-rows-hint', text: 'Skip these rows and send the rest' });
  button.addEventListener('click', () => {
    focusWanted = true;
    startCampaign({ skipProblemRows: true, skipSentIn });
  });
  return el('div', { class: 'actions skip-offer' }, button,
    el('p', { id: 'skip-problem-rows-hint', class: 'hint',
      text: `${rowCount === 1 ? 'That row is' : `Those ${rowCount} rows are`} not sent (“skipped” in the results); everyone else gets the message.` }));
}

function problemRows(problems) {
  return new Set(problems.map((p) => p && p.line).filter((line) => line !== null && line !== undefined)).size;
}

/** The one confirmation before a campaign: it names the count, the server and the sender. */
function confirmSend(question, options) {
  const out = $('#send-status');
  const later = /^Schedule /.test(question || '');
  const yes = el('button', { type: 'button', id: 'confirm-send', class: 'primary', text: later ? 'Yes, schedule' : 'Yes, send' });
  const no = el('button', { type: 'button', id: 'confirm-cancel', text: 'Cancel' });
  const cancelIt = () => {
    show(out, el('p', { class: 'hint', text: 'Nothing sent.' }));
    $('#send').focus();
  };
  yes.addEventListener('click', () => {
    show(out);
    $('#send').focus();
    focusWanted = true;
    startCampaign({ ...options, confirmed: true });
  });
  no.addEventListener('click', cancelIt);
  show(out, confirmBox({ id: 'send-confirm', question, buttons: [yes, no], onEscape: cancelIt }));
  yes.focus();
}

/** Check the pace fields; false (with the field named and focused) when one is not a number. */
function paceProblem(out) {
  if (getDelay() === null) {
    $('#send-settings').open = true;
    show(out, errorBlock({ title: 'Check the delay', message: 'Delay (ms) must be a whole number of milliseconds from 0 to 3600000.', fix: ['Enter e.g. 1000 for one message per second.'] }));
    $('#delay').focus();
    return true;
  }
  if (getConnections() === null) {
    $('#send-settings').open = true;
    show(out, errorBlock({ title: 'Check the connections', message: 'Connections must be a whole number from 1 to 16.', fix: ['Enter 1 for a mailbox such as Gmail or Outlook, or e.g. 4 for a sending service.'] }));
    $('#connections').focus();
    return true;
  }
  const chosen = getLimits();
  if (chosen.error) {
    $('#limits-box').open = true;
    show(out, errorBlock({ title: 'Check the sending limits', message: `${chosen.label} must be a number of messages (0 or empty: no limit).`, fix: ['Enter e.g. 500 in Per day, or leave the field empty.'] }));
    $(chosen.error).focus();
    return true;
  }
  const retry = getRetry();
  if (retry.error) {
    $('#retry-box').open = true;
    show(out, errorBlock({ title: 'Check the retries', message: `${retry.label} must be ${retry.whole ? 'a whole number' : 'a number'} of at least ${retry.min}.`, fix: retryDefaultsWords ? [retryDefaultsWords] : [] }));
    $(retry.error).focus();
    return true;
  }
  return false;
}

/** The Send section's options as the bridge takes them (limits, retries, pace, skipped rows). */
export function sendOptions({ skipProblemRows = false, skipSentIn = null } = {}) {
  const options = { delay_ms: getDelay() ?? 1000, connections: getConnections() ?? 1 };
  const chosen = getLimits();
  if (!chosen.error) options.limits = chosen.limits;
  const retry = getRetry();
  if (!retry.error) options.retry = retry.retry;
  const skip = deps && deps.skippedFields ? deps.skippedFields() : [];
  if (skip.length) options.skip_empty = skip.join(',');
  if (skipProblemRows) options.skip_problem_rows = true;
  if (skipSentIn) options.skip_sent_in = skipSentIn;
  if (deps && deps.schedule) options.schedule = deps.schedule();
  return options;
}

/** Before anything is sent: the review (nothing missing, no broken row unless skipped), the
 * already-sent question, then one confirmation; `confirmed` starts the run. */
async function checkFirst(out, options) {
  show(out, busyLine('Checking every message…'));
  await deps.saveSettings();
  const r = await deps.review(options);
  if (!r || r.error) {
    show(out, el('p', { class: 'fail-line', text: 'Not started.' }), errorBlock((r && r.error) || { message: 'The check did not answer. Try again.' }));
    return;
  }
  const missing = Array.isArray(r.missing) ? r.missing : [];
  if (missing.length) {
    show(out, el('p', { class: 'fail-line', text: `Not started: ${missing.map((m) => m.text).join('; ')}.` }));
    return;
  }
  const problems = Array.isArray(r.problems) ? r.problems : [];
  const rowCount = problemRows(problems);
  if (problems.length && !options.skipProblemRows) {
    const what = rowCount ? `${plural(rowCount, 'message')} cannot be built` : 'the message cannot be built';
    show(out,
      el('p', { class: 'fail-line', text: `Not started: ${what} (${plural(problemCount(problems), 'problem')}). Fix the template or the list, then send again.` }),
      problemsList(problems),
      skipOffer(problems, rowCount, options.skipSentIn));
    return;
  }
  starting = true;
  let earlier = null;
  try {
    earlier = await sentBefore();
  } finally {
    starting = false;
  }
  if (earlier) confirmResend(earlier, options, r.confirm);
  else confirmSend(r.confirm, options);
}

async function startCampaign({ confirmed = false, skipProblemRows = false, skipSentIn = null } = {}) {
  if (starting || BUSY.has(state)) return;
  const out = $('#send-status');
  if (paceProblem(out)) return;
  if (!confirmed) {
    starting = true;
    setState(state);
    try {
      await checkFirst(out, { skipProblemRows, skipSentIn });
    } finally {
      starting = false;
      setState(state);
    }
    return;
  }
  starting = true;
  setState(state);
  // The last run's summary goes away at once, so nobody mistakes it for this run's.
  const summary = $('#summary');
  const hadSummary = !summary.hidden;
  summary.hidden = true;
  let started = false;
  try {
    show(out, busyLine('Starting…'));
    const params = { account: deps.getAccount(), ...deps.getCredentials(), message: deps.getMessage(),
      ...sendOptions({ skipProblemRows, skipSentIn }) };
    const result = await call('start_campaign', params);
    if (!result.ok) {
      const steps = result.error && Array.isArray(result.error.steps) ? result.error.steps : [];
      const rowProblems = steps.filter((s) => s && typeof s === 'object' && 'line' in s && 'message' in s);
      let error = result.error;
      const counted = error && Number.isFinite(error.row_count) ? error.row_count : null;
      if (rowProblems.length && counted !== null) {
        // The one line repeats the first problem: the grouped list below says it better.
        error = { ...error, message: `${plural(counted, 'message')} cannot be built (${plural(problemCount(rowProblems), 'problem')}, listed below).` };
      }
      show(out, el('p', { class: 'fail-line', text: 'Not started.' }), errorBlock(error),
        rowProblems.length ? [problemsList(rowProblems), skipOffer(rowProblems, problemRows(rowProblems), skipSentIn)] : null);
      return;
    }
    started = true;
    const d = result.data || {};
    deps.rememberProvider();
    newRun(d.campaign);
    if (d.state === 'scheduled') {
      // Journaled to start later: nothing is sent now, so no progress to follow.
      stateCampaign = d.campaign;
      show(out, el('p', { class: 'ok-line', id: 'scheduled-line', text: `${d.words || 'Scheduled'}; ${BY_ITSELF}.` }));
      setState('scheduled');
      deps.onRunEnded(d);
      return;
    }
    if (Number.isFinite(d.total)) total = d.total;
    show(out, skipProblemRows ? el('p', { class: 'hint', text: 'Rows that cannot be built are skipped; sending to the rest.' }) : null);
    if (stateCampaign !== d.campaign) {
      stateCampaign = d.campaign;
      setState('running');
    } else {
      setState(state);
    }
    renderCounts(log.getCounts());
  } finally {
    starting = false;
    if (!started && hadSummary && summary.hidden && summary.childNodes.length) summary.hidden = false;
    setState(state);
  }
}

async function control(method) {
  const result = await call(method);
  if (!result.ok) {
    // The run ended while the click was on its way: nothing left to pause or cancel.
    if (!ACTIVE.has(state) && result.error && result.error.category === 'action_unavailable') return;
    show($('#send-status'), errorBlock(result.error));
    return;
  }
  // The run may have ended (its event already here) while this call was on its way.
  if (result.data && result.data.state && ACTIVE.has(state)) setState(result.data.state);
}

/** Milliseconds of the current run spent paused between t0 and t1 (as far as this page saw). */
function pausedBetween(t0, t1) {
  const spans = pauseStart === null ? pauses : [...pauses, [pauseStart, Date.now()]];
  let ms = 0;
  for (const [a, b] of spans) ms += Math.max(0, Math.min(b, t1) - Math.max(a, t0));
  return ms;
}

/** Messages per minute over the recent completions, not counting time spent paused. */
function ratePerMinute() {
  const recent = completions.slice(-RATE_WINDOW);
  if (recent.length < 2) return null;
  const first = recent[0];
  const last = recent[recent.length - 1];
  const span = last - first - pausedBetween(first, last);
  if (!(span > 0)) return null;
  return ((recent.length - 1) / span) * 60000;
}

/** The whole run's rate over its sending time (its duration minus time spent paused). */
function finalRate(summary) {
  if (!summary || !(Number(summary.sent) > 0) || !Number.isFinite(summary.duration_s)) return null;
  const sending = summary.duration_s - pausedBetween(0, Number.MAX_SAFE_INTEGER) / 1000;
  if (sending < 1) return null; // a rate over a fraction of a second says nothing useful
  return (summary.sent / sending) * 60;
}

function renderCounts(counts) {
  // Only messages that were tried fill the bar: after a failed or cancelled run the rest
  // are "not sent", not done.
  const done = counts.sent + counts.failed + counts.uncertain;
  const notSent = counts.skipped;
  const remaining = Math.max(0, total - done - notSent);
  const progress = $('#progress');
  progress.max = Math.max(total, 1);
  progress.value = Math.min(done, Math.max(total, 1));
  progress.setAttribute('aria-valuetext', total ? `${done} of ${total}${notSent ? `, ${notSent} not sent` : ''}` : 'Not started');
  progress.dataset.state = state;

  const paused = state === 'paused';
  const rate = paused ? null : ACTIVE.has(state) ? ratePerMinute() : finalRatePerMin;
  let eta = '';
  if (paused) eta = 'paused';
  else if (state === 'running' && rate) {
    const left = (remaining / rate) * 60;
    eta = remaining && left >= 1 ? `about ${formatDuration(left)} left` : 'almost done';
  }
  else if (state === 'finished') eta = 'done';

  const parts = [
    el('span', { id: 'count-sent', text: `Sent ${counts.sent}` }), ' · ',
    el('span', { id: 'count-failed', text: `Failed ${counts.failed}` }), ' · ',
    el('span', { id: 'count-remaining', text: `Remaining ${remaining}` }),
  ];
  if (counts.uncertain) parts.push(' · ', el('span', { id: 'count-uncertain', text: `Uncertain ${counts.uncertain}` }));
  if (notSent) parts.push(' · ', el('span', { id: 'count-not-sent', text: `Not sent ${notSent}` }));
  // While paused the rate is hidden: it would count the pause as slow sending.
  if (rate) parts.push(' · ', el('span', { id: 'rate', text: formatRate(rate) }));
  else if (state === 'running') parts.push(' · ', el('span', { id: 'rate', text: '— messages/min' }));
  if (eta) parts.push(' · ', el('span', { id: 'eta', text: eta }));
  // The account's last 24 hours as it sends: what it had sent before the run, and this run's.
  if (meter && ACTIVE.has(state)) parts.push(' · ', el('span', { id: 'meter', text: `Last 24 hours: ${meterWords(meter, counts.sent)}` }));
  show($('#counts'), parts);
}

function renderSummary(ev) {
  const s = ev.summary || {};
  const box = $('#summary');
  const num = (v) => (Number.isFinite(v) ? v : 0);
  const failed = ev.state === 'failed';
  const stoppedEarly = ev.state === 'finished' && !!ev.error;
  const titles = { finished: stoppedEarly ? 'Run stopped early' : 'Run finished', cancelled: 'Run cancelled', failed: 'Run failed' };
  box.dataset.state = ev.state || '';
  const parts = [el('h3', { text: titles[ev.state] || 'Run ended' })];
  // What went wrong and how to fix it comes first: it is why the run ended.
  if (ev.error) parts.push(errorBlock(ev.error));
  else if (failed && s.stopped) parts.push(errorBlock({ title: deps.categoryTitle(String(s.stopped)), category: String(s.stopped) }));
  const counts = [el('span', { text: `Sent ${num(s.sent)}` }), ' · ', el('span', { text: `Failed ${num(s.failed)}` })];
  if (num(s.uncertain)) counts.push(' · ', el('span', { text: `Uncertain ${num(s.uncertain)}` }));
  // Not sent: left out, or still due (a run stopped by a quota or a refused login).
  const notSent = num(s.skipped) + num(s.deferred);
  if (notSent) counts.push(' · ', el('span', { class: 'not-sent', text: `Not sent ${notSent}` }));
  parts.push(el('p', { class: 'summary-counts' }, Number.isFinite(s.total) ? `${plural(s.total, 'recipient')}: ` : '', counts));
  if (notSent) {
    const who = plural(notSent, 'recipient was', 'recipients were');
    parts.push(el('p', { class: 'hint', text: ev.state === 'cancelled'
      ? `${who} not sent because the run was cancelled.`
      : `${who} not sent. Fix the problem above, then send again.` }));
  }
  if (Number.isFinite(s.duration_s)) {
    let line = `Took ${formatDuration(s.duration_s)}`;
    const pausedS = pausedBetween(0, Number.MAX_SAFE_INTEGER) / 1000;
    if (pausedS >= 1) line += `, ${formatDuration(pausedS)} of it paused`;
    if (finalRatePerMin) line += ` (${formatRate(finalRatePerMin)}${pausedS >= 1 ? ' while sending' : ''})`;
    parts.push(el('p', { text: line + '.' }));
  }
  const byCategory = s.failed_by_category;
  const entries = Array.isArray(byCategory) ? byCategory : byCategory && typeof byCategory === 'object' ? Object.entries(byCategory) : [];
  if (entries.length) {
    parts.push(el('h4', { text: 'Failures by category' }));
    parts.push(el('ul', { class: 'by-category' }, entries.map(([category, n]) => el('li', {},
      el('strong', { text: deps.categoryTitle(category) }), `: ${n}`))));
  }
  if (s.stopped && s.stopped !== 'cancelled' && !failed && !ev.error) {
    parts.push(el('p', { class: 'fail-line', text: `Stopped early: ${deps.categoryTitle(String(s.stopped))}.` }));
  }
  if (Number(s.failed) > 0) parts.push(el('p', { class: 'hint', text: 'Tick “Failed only” to see the failed rows and how to fix each.' }));
  show(box, parts);
  box.hidden = false;
}
