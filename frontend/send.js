// Send section: start / pause / resume / cancel, the progress bar, counts, rate and time
// remaining (from event timestamps), and the end-of-run summary in the Activity log.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, formatDuration, plural } from './dom.js';
import * as log from './log.js';
import { problemsList } from './compose.js';

const ACTIVE = new Set(['running', 'paused']);
const BUSY = new Set(['running', 'paused', 'cancelling']); // Send stays disabled
const ENDED = new Set(['finished', 'cancelled', 'failed']);
const RATE_WINDOW = 100; // completions used for the rate

let deps = null;
let state = 'idle';
let stateCampaign = null; // campaign of the last state we were told about
let starting = false;
let total = 0;
let completions = [];
let finalRatePerMin = null;

export function initSend(dependencies, message) {
  deps = dependencies;
  if (message && Number.isFinite(message.delay_ms)) $('#delay').value = String(message.delay_ms);
  $('#send').addEventListener('click', startCampaign);
  $('#pause').addEventListener('click', () => control('pause_campaign'));
  $('#resume').addEventListener('click', () => control('resume_campaign'));
  $('#cancel').addEventListener('click', () => control('cancel_campaign'));
  log.onFlush((snapshot) => {
    completions.push(...snapshot.completed);
    if (completions.length > RATE_WINDOW * 2) completions = completions.slice(-RATE_WINDOW);
    renderCounts(snapshot.counts);
  });
  setState('idle');
  renderCounts(log.getCounts());
}

export function getDelay() {
  const n = Number($('#delay').value);
  return Number.isInteger(n) && n >= 0 && n <= 3600000 ? n : null;
}

function newRun(campaign) {
  if (!campaign || campaign === log.currentCampaign()) return;
  log.setCampaign(campaign);
  completions = [];
  finalRatePerMin = null;
  total = 0;
  $('#summary').hidden = true;
  show($('#summary'));
}

/** An 'email-progress' event. */
export function handleProgress(ev) {
  newRun(ev.campaign);
  if (Number.isFinite(ev.total)) total = ev.total;
  if (!BUSY.has(state) && !(ENDED.has(state) && stateCampaign === ev.campaign)) {
    stateCampaign = ev.campaign;
    setState('running');
  }
  log.queueProgress(ev);
}

/** A 'campaign-state' event. */
export function handleState(ev) {
  newRun(ev.campaign);
  stateCampaign = ev.campaign ?? stateCampaign;
  if (Number.isFinite(ev.total)) total = ev.total;
  setState(ev.state);
  if (ENDED.has(ev.state)) {
    log.flush();
    const s = ev.summary;
    if (s) {
      log.setCounts(s);
      if (Number.isFinite(s.total)) total = s.total;
      if (Number.isFinite(s.rate_per_s)) finalRatePerMin = s.rate_per_s * 60;
    }
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
  log.setCounts(d.counts);
  setState(d.state || 'idle');
  if (ENDED.has(d.state) && d.summary) {
    if (Number.isFinite(d.summary.rate_per_s)) finalRatePerMin = d.summary.rate_per_s * 60;
    renderSummary({ state: d.state, summary: d.summary, error: d.error || null });
  }
  renderCounts(log.getCounts());
}

function setState(next) {
  state = next || 'idle';
  const active = ACTIVE.has(state);
  const paused = state === 'paused';
  const focused = document.activeElement;
  $('#send').disabled = BUSY.has(state) || starting;
  $('#pause').hidden = paused;
  $('#pause').disabled = state !== 'running';
  $('#resume').hidden = !paused;
  $('#resume').disabled = !paused;
  $('#cancel').disabled = !active;
  // Keep keyboard focus on the Pause/Resume toggle when it swaps.
  if (focused === $('#pause') && paused) $('#resume').focus();
  else if (focused === $('#resume') && !paused && state === 'running') $('#pause').focus();
  document.body.dataset.campaignState = state;
  const words = {
    running: 'Sending…',
    paused: 'Paused. Resume to continue, or Cancel.',
    finished: 'Finished.',
    cancelled: 'Cancelled.',
    failed: 'Stopped because of an error.',
    cancelling: 'Cancelling after the current message…',
  };
  renderCounts(log.getCounts());
  const line = $('#send-state');
  const text = words[state] || '';
  if (line.textContent !== text) line.textContent = text;
}

async function startCampaign() {
  if (starting || BUSY.has(state)) return;
  starting = true;
  setState(state);
  const out = $('#send-status');
  // The last run's summary goes away at once, so nobody mistakes it for this run's.
  const summary = $('#summary');
  const hadSummary = !summary.hidden;
  summary.hidden = true;
  let started = false;
  try {
    const delay = getDelay();
    if (delay === null) {
      show(out, errorBlock({ title: 'Check the delay', message: 'Delay (ms) must be a whole number of milliseconds from 0 to 3600000.', fix: ['Enter e.g. 1000 for one message per second.'] }));
      $('#delay').focus();
      return;
    }
    show(out, busyLine('Checking every message…'));
    await deps.saveSettings();
    const message = deps.getMessage();
    const check = await call('check_message', { message, from_address: deps.getFromAddress() });
    if (!check.ok) {
      show(out, el('p', { class: 'fail-line', text: 'Not started.' }), errorBlock(check.error));
      return;
    }
    const problems = (check.data && Array.isArray(check.data.problems)) ? check.data.problems : [];
    if (problems.length) {
      show(out,
        el('p', { class: 'fail-line', text: `Not started: ${plural(problems.length, 'message')} cannot be built. Fix the template or the list, then send again.` }),
        problemsList(problems));
      return;
    }
    show(out, busyLine('Starting…'));
    const result = await call('start_campaign', { account: deps.getAccount(), ...deps.getCredentials(), message, delay_ms: delay });
    if (!result.ok) {
      const steps = result.error && Array.isArray(result.error.steps) ? result.error.steps : [];
      const rowProblems = steps.filter((s) => s && typeof s === 'object' && 'line' in s && 'message' in s);
      show(out, el('p', { class: 'fail-line', text: 'Not started.' }), errorBlock(result.error),
        rowProblems.length ? problemsList(rowProblems) : null);
      return;
    }
    started = true;
    const d = result.data || {};
    deps.rememberProvider();
    newRun(d.campaign);
    if (Number.isFinite(d.total)) total = d.total;
    show(out);
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
    show($('#send-status'), errorBlock(result.error));
    return;
  }
  // The run may have ended (its event already here) while this call was on its way.
  if (result.data && result.data.state && ACTIVE.has(state)) setState(result.data.state);
}

function ratePerMinute() {
  const recent = completions.slice(-RATE_WINDOW);
  if (recent.length < 2) return null;
  const span = recent[recent.length - 1] - recent[0];
  if (!(span > 0)) return null;
  return ((recent.length - 1) / span) * 60000;
}

function renderCounts(counts) {
  const done = counts.sent + counts.failed + counts.uncertain + counts.skipped;
  const remaining = Math.max(0, total - done);
  const progress = $('#progress');
  progress.max = Math.max(total, 1);
  progress.value = Math.min(done, Math.max(total, 1));
  progress.setAttribute('aria-valuetext', total ? `${done} of ${total}` : 'Not started');

  const rate = ACTIVE.has(state) ? ratePerMinute() : finalRatePerMin ?? ratePerMinute();
  let eta = '—';
  if (state === 'paused') eta = 'paused';
  else if (state === 'running' && rate) eta = remaining ? `about ${formatDuration((remaining / rate) * 60)} left` : 'almost done';
  else if (ENDED.has(state)) eta = 'done';

  const parts = [
    el('span', { id: 'count-sent', text: `Sent ${counts.sent}` }), ' · ',
    el('span', { id: 'count-failed', text: `Failed ${counts.failed}` }), ' · ',
    el('span', { id: 'count-remaining', text: `Remaining ${remaining}` }),
  ];
  if (counts.uncertain) parts.push(' · ', el('span', { id: 'count-uncertain', text: `Uncertain ${counts.uncertain}` }));
  if (counts.skipped) parts.push(' · ', el('span', { id: 'count-skipped', text: `Skipped ${counts.skipped}` }));
  parts.push(' · ', el('span', { id: 'rate', text: rate ? `${rate.toFixed(rate < 10 ? 1 : 0)} messages/min` : '— messages/min' }));
  parts.push(' · ', el('span', { id: 'eta', text: eta }));
  show($('#counts'), parts);
}

function renderSummary(ev) {
  const s = ev.summary || {};
  const box = $('#summary');
  const titles = { finished: 'Run finished', cancelled: 'Run cancelled', failed: 'Run stopped' };
  const parts = [el('h3', { text: titles[ev.state] || 'Run ended' })];
  const num = (v) => (Number.isFinite(v) ? v : 0);
  parts.push(el('p', { class: 'summary-counts' },
    el('span', { text: `Sent ${num(s.sent)}` }), ' · ',
    el('span', { text: `Failed ${num(s.failed)}` }), ' · ',
    el('span', { text: `Uncertain ${num(s.uncertain)}` }), ' · ',
    el('span', { text: `Skipped ${num(s.skipped)}` }),
    Number.isFinite(s.total) ? ` of ${s.total}` : ''));
  if (Number.isFinite(s.duration_s)) {
    let line = `Took ${formatDuration(s.duration_s)}`;
    if (Number.isFinite(s.rate_per_s)) line += ` (${(s.rate_per_s * 60).toFixed(1)} messages/min)`;
    parts.push(el('p', { text: line + '.' }));
  }
  const byCategory = s.failed_by_category;
  const entries = Array.isArray(byCategory) ? byCategory : byCategory && typeof byCategory === 'object' ? Object.entries(byCategory) : [];
  if (entries.length) {
    parts.push(el('h4', { text: 'Failures by category' }));
    parts.push(el('ul', { class: 'by-category' }, entries.map(([category, n]) => el('li', {},
      el('strong', { text: deps.categoryTitle(category) }), ` (${category}): ${n}`))));
  }
  if (s.stopped && s.stopped !== 'cancelled' && ev.state !== 'failed') {
    parts.push(el('p', { class: 'fail-line', text: `Stopped early: ${deps.categoryTitle(String(s.stopped))}.` }));
  }
  if (ev.error) parts.push(errorBlock(ev.error));
  if (Number(s.failed) > 0) parts.push(el('p', { class: 'hint', text: 'Tick “Failed only” to see the failed rows and how to fix each.' }));
  show(box, parts);
  box.hidden = false;
}
