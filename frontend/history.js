// History: past campaigns from the journal, each one's recipients, and follow-up runs
// (resume an interrupted or stopped campaign, resend to its failed / uncertain recipients).
// Runs started here are followed by the Send section and the Activity log like a Send.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, actionButton, confirmBox, plural, breakable } from './dom.js';

const DETAIL_ROWS = 200;
const UNCERTAIN_SHOWN = 50;
const STATE_WORDS = {
  running: 'Running', paused: 'Paused', stopped: 'Stopped', finished: 'Finished',
  cancelled: 'Cancelled', failed: 'Failed', interrupted: 'Interrupted', scheduled: 'Scheduled', waiting: 'Waiting',
};
const STEP_COUNTS = [['sent', 'sent'], ['failed', 'failed'], ['uncertain', 'uncertain'], ['skipped', 'skipped'],
  ['pending', 'not sent yet'], ['deferred', 'retrying'], ['bounced', 'bounced'], ['replied', 'replied'],
  ['auto_replied', 'auto-replied']];
const THIS_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const STATUS_WORDS = {
  pending: 'Not sent yet', sending: 'Sending', sent: 'Sent', failed: 'Failed', deferred: 'Retrying',
  skipped: 'Not sent', uncertain: 'Uncertain', bounced: 'Bounced', replied: 'Replied', auto_replied: 'Auto-reply',
};
// Read the mailbox by itself while the window is open (the core says which campaigns are due).
const AUTO_CHECK_MS = 60_000;
const FILTERS = [['', 'Everyone'], ['sent', 'Sent'], ['failed', 'Failed'], ['bounced', 'Bounced'],
  ['replied', 'Replied'], ['auto_replied', 'Auto-reply'], ['skipped', 'Not sent'], ['uncertain', 'Uncertain']];

let deps = null;
let campaigns = new Map(); // id -> campaign as the bridge gave it
let detailFilter = ''; // the details' Show filter: a status, or '' for everyone

export function initHistory(dependencies) {
  deps = dependencies;
  $('#history-refresh').addEventListener('click', (event) => withBusy(event.currentTarget, () => refreshHistory()));
  $('#history-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const { action, id } = button.dataset;
    const back = { focusAfter: () => $('#history-refresh') };
    if (action === 'details') withBusy(button, () => showDetails(id), back);
    else if (action === 'resume') withBusy(button, () => resume(id, 'ask'), back);
    else if (action === 'resend') withBusy(button, () => resend(id, false), back);
    else if (action === 'resend-uncertain') withBusy(button, () => resend(id, true), back);
    else if (action === 'track') withBusy(button, () => checkReplies(id), back);
    else if (action === 'reschedule') askReschedule(id);
    else if (action === 'edit-scheduled') askMessage(id);
    else if (action === 'cancel-scheduled') askCancel(id);
  });
  setTimeout(autoCheck, AUTO_CHECK_MS / 2);
}

/** Check replies and bounces: read the campaign's mailbox (read-only) and say what changed. */
async function checkReplies(id) {
  const out = $('#history-status');
  show(out, busyLine('Reading the mailbox (read-only)…'));
  const result = await call('check_replies', { id, password: deps.getCredentials().password || '', move_bounces: $('#move-bounces').checked });
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  const [checked] = (result.data && result.data.checked) || [];
  show(out, el('p', { class: 'ok-line', text: checked ? `Checked: ${checked.summary}.` : 'Checked.' }));
  await refreshHistory({ quiet: true });
  if (!$('#history-details').hidden) await showDetails(id);
}

/** Every minute: the campaigns of the last 3 days whose check is due (at most every 10 minutes). */
async function autoCheck() {
  try {
    if (deps.isBusy()) return;
    const result = await call('check_replies', { password: deps.getCredentials().password || '', move_bounces: $('#move-bounces').checked });
    const checked = result.ok && result.data && Array.isArray(result.data.checked) ? result.data.checked : [];
    const changed = checked.filter((c) => c.counts && (c.counts.bounced || c.counts.replied || c.counts.auto_replied || c.counts.now_sent));
    if (changed.length) {
      await refreshHistory({ quiet: true });
      $('#history-auto').textContent = `Checked the mailbox by itself: ${changed.map((c) => c.summary).join('; ')}.`;
    }
  } finally {
    setTimeout(autoCheck, AUTO_CHECK_MS);
  }
}

const num = (v) => (Number.isFinite(Number(v)) ? Number(v) : 0);

/** {sent, failed, uncertain, notSent, left}: left = still to send on a resume. */
function tally(c) {
  const counts = (c && c.counts) || {};
  const sent = num(counts.sent);
  const failed = num(counts.failed);
  const uncertain = num(counts.uncertain);
  const total = num(c && c.total) || Object.values(counts).reduce((a, b) => a + num(b), 0);
  const left = num(c && c.left_to_send);  // the core's count: pending and deferred
  const skipped = num(counts.skipped);  // invalid, duplicate, suppressed lines and the ones left out
  // Sent, then read back from the mailbox: bounced, replied, auto-replied.
  const bounced = num(counts.bounced);
  const replied = num(counts.replied);
  const autoReplied = num(counts.auto_replied);
  const answered = bounced + replied + autoReplied;
  return { sent, failed, uncertain, left, skipped, bounced, replied, autoReplied, answered,
    notSent: Math.max(0, total - sent - failed - uncertain - skipped - answered) };
}

/** Whether a campaign can be resumed is the core's answer, not a rule of the page. */
function canResume(c) {
  return Boolean(c && c.resumable);
}

function formatTime(value) {
  const t = Date.parse(value);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : String(value ?? '');
}

/** The time a quota-stopped campaign can continue, while that is still ahead; else null. */
function quotaLifts(c) {
  if (!c || c.state === 'scheduled' || c.state === 'waiting') return null; // its time, not a quota's
  const t = Date.parse(c && c.resume_after);
  return Number.isFinite(t) && t > Date.now() ? new Date(t) : null;
}

/** A time on the wall clock of `tz` (the campaign's zone; named when it is not this computer's). */
function whenWords(value, tz = null) {
  const t = Date.parse(value);
  if (!Number.isFinite(t)) return String(value ?? '');
  const opts = { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  try {
    const there = tz ? new Date(t).toLocaleString([], { ...opts, timeZone: tz }) : null;
    if (there && there !== new Date(t).toLocaleString([], opts)) return `${there} (${tz})`; // another zone's wall clock
  } catch {
    /* a zone this browser does not know: the computer's below */
  }
  return new Date(t).toLocaleString([], opts);
}

/** The campaign's state in words: its time when scheduled, why it waits, when it should end. */
function stateWords(c) {
  const times = c.times || {};
  let words = STATE_WORDS[c.state] || String(c.state ?? '');
  if (c.state === 'scheduled' && times.at) words = `Scheduled for ${whenWords(times.at, times.tz)}`;
  else if (c.state === 'waiting' && c.reason) words = `Waiting: ${c.reason}`;
  if (quotaLifts(c)) words += ` (quota: can continue after ${quotaLifts(c).toLocaleString()})`;
  const ends = Date.parse(times.ends_about);
  const start = Math.max(Date.now(), Date.parse(times.at) || 0);
  if (['running', 'paused', 'waiting', 'scheduled'].includes(c.state) && Number.isFinite(ends) && ends - start > 3600_000) {
    words += `. Ends about ${whenWords(times.ends_about, times.tz)}`;
  }
  return words;
}

/** "Follow-up 1: 3 days after — 5 sent, 5 skipped" (or when it is due, or why it was not sent). */
function stepWords(s, tz) {
  const days = Number(s.after_days);
  const after = `${days} day${days === 1 ? '' : 's'} after`;
  let what;
  if (s.campaign) {
    const counts = s.counts || {};
    const parts = STEP_COUNTS.filter(([key]) => num(counts[key])).map(([key, words]) => `${num(counts[key])} ${words}`);
    what = parts.join(', ') || 'nobody to send to';
    if (s.state && s.state !== 'finished') what = `${STATE_WORDS[s.state] || s.state}: ${what}`;
  } else if (s.due) {
    what = `due ${whenWords(s.due, tz)}`;
  } else if (s.state === 'waiting') {
    what = s.reason || (Number(s.step) > 1 ? `after follow-up ${s.step - 1}, if no reply` : 'after the campaign is sent, if no reply');
  } else {
    what = s.reason || STATE_WORDS[s.state] || String(s.state ?? '');
  }
  return `Follow-up ${s.step}: ${after} — ${what}`;
}

function interruptedWords(c) {
  const t = tally(c);
  return `A campaign was interrupted (${t.sent} sent, ${t.notSent} not sent, ${t.uncertain} uncertain). Resume it?`;
}

/** Load the list; resolves to the campaigns (empty on failure). */
export async function refreshHistory({ quiet = false } = {}) {
  const out = $('#history-status');
  if (!quiet) show(out, busyLine('Loading the history…'));
  const result = await call('campaign_history');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return [];
  }
  const list = (result.data && Array.isArray(result.data.campaigns)) ? result.data.campaigns.filter((c) => c && c.id) : [];
  campaigns = new Map(list.map((c) => [String(c.id), c]));
  const frag = document.createDocumentFragment();
  for (const c of list) frag.append(campaignRow(c), stepsRow(c));
  $('#history-list').replaceChildren(frag);
  $('.history-scroll').hidden = list.length === 0;
  // Only the loading line goes: a question asked meanwhile (a click on a row) stays.
  if (!quiet && out.querySelector('.busy')) show(out);
  $('#history-count').textContent = list.length ? `${plural(list.length, 'campaign')}.`
    : 'No campaigns yet. Your first one starts at Account: try it with the Local test inbox.';
  const interrupted = list.find((c) => c.state === 'interrupted') || null;
  renderNotice(interrupted);
  if (deps.onInterrupted) deps.onInterrupted(interrupted ? `${interruptedWords(interrupted)} See History.` : null);
  return list;
}

function campaignRow(c) {
  const id = String(c.id);
  const t = tally(c);
  const buttons = [actionButton('Details', `of campaign ${id}`, { dataset: { action: 'details', id } })];
  const times = c.times || {};
  const steps = Array.isArray(times.follow_ups) ? times.follow_ups : [];
  if (c.state === 'scheduled') {
    buttons.push(actionButton('Change time', `of campaign ${id}`, { dataset: { action: 'reschedule', id } }));
    buttons.push(actionButton('Change message', `of campaign ${id}`, { dataset: { action: 'edit-scheduled', id } }));
  }
  if (c.state === 'scheduled' || c.state === 'waiting') {
    buttons.push(actionButton('Cancel', `campaign ${id}`, { dataset: { action: 'cancel-scheduled', id } }));
  } else if (c.state === 'finished' && steps.some((s) => s.state === 'waiting' && !s.campaign)) {
    buttons.push(actionButton('Cancel follow-ups', `of campaign ${id}`, { dataset: { action: 'cancel-scheduled', id } }));
  }
  if (canResume(c) && c.state !== 'scheduled') buttons.push(actionButton('Resume', `campaign ${id}`, { dataset: { action: 'resume', id } }));
  if (t.failed > 0) buttons.push(actionButton('Resend to failed', `of campaign ${id}`, { dataset: { action: 'resend', id } }));
  if (t.uncertain > 0) {
    buttons.push(actionButton('Resend to failed and uncertain', `of campaign ${id}`, { dataset: { action: 'resend-uncertain', id } }));
  }
  if (t.sent + t.answered > 0 && c.trackable !== false) buttons.push(actionButton('Check replies and bounces', `of campaign ${id}`, { dataset: { action: 'track', id } }));
  const rest = [t.bounced ? `${t.bounced} bounced` : null, t.replied ? `${t.replied} replied` : null,
    t.autoReplied ? `${t.autoReplied} auto-repl${t.autoReplied === 1 ? 'y' : 'ies'}` : null,
    t.notSent ? `${t.notSent} not sent` : null, t.uncertain ? `${t.uncertain} uncertain` : null,
    t.skipped ? `${t.skipped} skipped` : null].filter(Boolean);
  const parent = times.follow_up_of ? campaigns.get(String(times.follow_up_of)) : null;
  const data = { id, state: String(c.state ?? '') };
  if (times.follow_up_of) data.followUp = String(times.step ?? '');
  return el('tr', { dataset: data },
    el('td', { class: 'history-campaign' }, el('span', { class: 'history-subject', text: c.subject || '(no subject)' }),
      times.follow_up_of ? el('span', { class: 'history-when', text: `Follow-up ${times.step ?? ''} of “${(parent && parent.subject) || times.follow_up_of}”` }) : null,
      el('span', { class: 'history-date', text: formatTime(c.created) })),
    el('td', { class: 'address' }, breakable(c.account_words ?? c.account ?? '')),
    el('td', { class: 'history-state', text: stateWords(c) }),
    el('td', { class: 'num history-sent', text: String(t.sent) }),
    el('td', { class: 'num history-failed', text: String(t.failed) }),
    el('td', { text: rest.length ? rest.join(' · ') : '0' }),
    el('td', { class: 'history-actions' }, buttons));
}

/** The campaign's follow-up steps, on a row of their own under it (the full width: they are sentences). */
function stepsRow(c) {
  const times = c.times || {};
  const steps = Array.isArray(times.follow_ups) ? times.follow_ups : [];
  if (!steps.length) return '';
  return el('tr', { class: 'history-steps-row', dataset: { stepsOf: String(c.id) } },
    el('td', { colspan: '7' }, el('ul', { class: 'history-steps', 'aria-label': `Follow-ups of ${c.subject || c.id}` },
      steps.map((s) => el('li', { text: stepWords(s, times.tz) })))));
}

function renderNotice(c) {
  const notice = $('#history-notice');
  if (!c) {
    notice.hidden = true;
    show(notice);
    return;
  }
  const id = String(c.id);
  const button = actionButton('Resume', 'the interrupted campaign', { id: 'history-resume-interrupted' });
  button.addEventListener('click', () => withBusy(button, () => resume(id, 'ask'), { focusAfter: () => $('#history-refresh') }));
  show(notice, el('p', { id: 'history-notice-question', class: 'confirm-question', text: interruptedWords(c) }), el('div', { class: 'actions' }, button));
  notice.hidden = false;
}

async function showDetails(id) {
  const box = $('#history-details');
  show(box, busyLine('Loading…'));
  box.hidden = false;
  const result = await call('campaign_details', { id });
  if (!result.ok) {
    show(box, errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  const rows = Array.isArray(d.rows) ? d.rows : [];
  const c = d.campaign || campaigns.get(id) || { id };
  const wanted = detailFilter;
  const shown = rows.filter((r) => !wanted || r.status === wanted).slice(0, DETAIL_ROWS);
  const filter = el('select', { id: 'history-filter' }, FILTERS.map(([value, words]) => el('option', { value, text: words, selected: value === wanted })));
  filter.addEventListener('change', () => {
    detailFilter = filter.value;
    showDetails(id).then(() => $('#history-filter').focus());
  });
  const body = el('tbody', { id: 'history-detail-rows' }, shown.map((r) => el('tr', { dataset: { status: String(r.status ?? '') } },
    el('td', { class: 'num', text: String(r.line ?? '') }),
    el('td', { class: 'address' }, breakable(r.email ?? '')),
    el('td', { text: STATUS_WORDS[r.status] || String(r.status ?? '') }),
    el('td', { text: [r.smtp_code, r.dsn_status, r.error, r.notice].filter((x) => x !== null && x !== undefined && x !== '').join(' ') }),
    el('td', { class: 'num', text: String(r.attempts ?? '') }),
    el('td', { class: 'nowrap', text: r.sent_at ? formatTime(r.sent_at) : '' }))));
  const more = rows.length > DETAIL_ROWS || num(c.total) > rows.length
    ? el('p', { class: 'hint', text: `Showing the first ${DETAIL_ROWS} of ${plural(Math.max(rows.length, num(c.total)), 'recipient')}; Export results has them all.` })
    : null;
  const close = el('button', { type: 'button', class: 'link-button', text: 'Close details' });
  close.addEventListener('click', () => {
    box.hidden = true;
    show(box);
    $('#history-refresh').focus();
  });
  show(box,
    el('h3', { id: 'history-details-heading', text: `Campaign ${c.id ?? id} (${STATE_WORDS[c.state] || c.state || ''}, started ${formatTime(c.created)})` }),
    el('div', { class: 'field field-inline' }, el('label', { for: 'history-filter', text: 'Show' }), filter),
    rows.length ? el('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-labelledby': 'history-details-heading' },
      el('table', { class: 'data-table history-detail-table' },
        el('thead', {}, el('tr', {}, ['#', 'Address', 'Status', 'Reply', 'Attempts', 'Sent at'].map((h) => el('th', { scope: 'col', text: h })))),
        body)) : el('p', { class: 'hint', text: 'No recipients recorded.' }),
    more, close);
}

function credentials() {
  return { account: deps.getAccount(), ...deps.getCredentials() };
}

function busyRefusal() {
  if (!deps.isBusy()) return false;
  show($('#history-status'), el('p', { class: 'fail-line', text: 'A campaign is running: wait for it to end, or cancel it in Send.' }));
  return true;
}

async function resume(id, uncertain, now = false, useCurrent = undefined) {
  if (busyRefusal()) return;
  const out = $('#history-status');
  const lifts = quotaLifts(campaigns.get(id));
  if (lifts && !now) {
    askQuota(id, uncertain, lifts);
    return;
  }
  show(out, busyLine('Resuming…'));
  deps.expectRun(id);
  const params = { id, uncertain, now, ...credentials() };
  if (useCurrent !== undefined) params.use_current_settings = useCurrent;
  const result = await call('resume_past_campaign', params);
  if (!result.ok) {
    deps.runStarted(null);
    if (result.error && result.error.settings) {
      askSettings(id, uncertain, now, result.error.settings);
      return;
    }
    const steps = result.error && Array.isArray(result.error.steps) ? result.error.steps : [];
    const who = steps.filter((s) => s && typeof s === 'object' && s.field === 'uncertain');
    if (uncertain === 'ask' && who.length) {
      askUncertain(id, who, now);
      return;
    }
    show(out, el('p', { class: 'fail-line', text: 'Not resumed.' }), errorBlock(result.error));
    return;
  }
  started(result.data, 'Resumed: follow it in Send and the Activity log.');
}

function askSettings(id, uncertain, now, settings) {
  const use = el('button', { type: 'button', id: 'history-use-current', text: 'Use the settings now in Account' });
  const keep = el('button', { type: 'button', id: 'history-keep-settings', text: "Keep the campaign's settings" });
  use.addEventListener('click', () => withBusy(use, () => resume(id, uncertain, now, true), { focusAfter: () => $('#history-refresh') }));
  keep.addEventListener('click', () => withBusy(keep, () => resume(id, uncertain, now, false), { focusAfter: () => $('#history-refresh') }));
  show($('#history-status'), confirmBox({
    id: 'history-settings-confirm',
    question: `Resume with the settings now in Account (${settings.now})? The campaign was sent through ${settings.was}.`,
    buttons: [use, keep],
  }));
  use.focus();
}

function askQuota(id, uncertain, lifts) {
  const now = el('button', { type: 'button', id: 'history-quota-now', text: 'Try now anyway' });
  const wait = el('button', { type: 'button', id: 'history-quota-wait', text: 'Wait' });
  now.addEventListener('click', () => withBusy(now, () => resume(id, uncertain, true), { focusAfter: () => $('#history-refresh') }));
  const waitIt = () => {
    show($('#history-status'), el('p', { class: 'hint', text: `Not resumed. Resume it after ${lifts.toLocaleString()}.` }));
    $('#history-refresh').focus();
  };
  wait.addEventListener('click', waitIt);
  show($('#history-status'), confirmBox({
    id: 'history-quota-confirm',
    question: `A sending quota stopped this campaign; it can continue after ${lifts.toLocaleString()}. Before then the server will probably refuse again. Try now anyway?`,
    buttons: [now, wait],
    onEscape: waitIt,
  }));
  wait.focus();
}

function askUncertain(id, who, now = false) {
  const again = el('button', { type: 'button', id: 'history-resend-uncertain', text: 'Send to them again' });
  const skip = el('button', { type: 'button', id: 'history-skip-uncertain', text: 'Skip them' });
  again.addEventListener('click', () => withBusy(again, () => resume(id, 'resend', now), { focusAfter: () => $('#history-refresh') }));
  skip.addEventListener('click', () => withBusy(skip, () => resume(id, 'skip', now), { focusAfter: () => $('#history-refresh') }));
  const list = el('ul', { class: 'history-uncertain' }, who.slice(0, UNCERTAIN_SHOWN).map((s) => el('li', {},
    s.line !== null && s.line !== undefined ? `line ${s.line}: ` : '', breakable(s.message ?? ''))));
  const rest = who.length > UNCERTAIN_SHOWN ? el('p', { class: 'hint', text: `and ${who.length - UNCERTAIN_SHOWN} more` }) : null;
  const box = confirmBox({
    id: 'history-uncertain-confirm',
    question: `${plural(who.length, 'recipient')} may or may not have got the message (the app stopped while sending). Send to them again, or skip them?`,
    buttons: [again, skip],
  });
  box.insertBefore(list, box.lastChild);
  if (rest) box.insertBefore(rest, box.lastChild);
  show($('#history-status'), box);
  skip.focus();
}

async function resend(id, includeUncertain) {
  if (busyRefusal()) return;
  const out = $('#history-status');
  show(out, busyLine('Starting the follow-up run…'));
  const result = await call('resend_campaign', { id, include_uncertain: includeUncertain, ...credentials() });
  if (!result.ok) {
    show(out, el('p', { class: 'fail-line', text: 'Not started.' }), errorBlock(result.error));
    return;
  }
  started(result.data, 'Follow-up run started: follow it in Send and the Activity log.');
}

function started(data, words) {
  const d = data || {};
  deps.runStarted(d.campaign, Number(d.total));
  const count = Number.isFinite(Number(d.total)) ? ` (${plural(Number(d.total), 'recipient')})` : '';
  // A resend leaves bounced and suppressed addresses out: the core says which, in words.
  const leftOut = d.left_out && d.left_out.words ? ` ${d.left_out.words[0].toUpperCase()}${d.left_out.words.slice(1)}.` : '';
  const said = `${words.replace(/\.$/, '')}${count}.`;
  show($('#history-status'), el('p', { class: 'ok-line', text: said }));
  show($('#send-status'), el('p', { class: 'hint', text: `${said}${leftOut}` }));
  refreshHistory({ quiet: true });
}

/** The wall-clock "YYYY-MM-DDTHH:MM" of an ISO time in `tz` (for a datetime-local field). */
function wallClock(value, tz) {
  const t = Date.parse(value);
  if (!Number.isFinite(t)) return '';
  let parts;
  try {
    parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz || undefined, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(t));
  } catch {
    return '';
  }
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}

/** Back from a small form in History's status region to the list. */
function closeForm() {
  show($('#history-status'));
  $('#history-refresh').focus();
}

/** A small form in History's status region: Escape closes it; `first` gets the focus. */
function openForm(box, first) {
  box.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      closeForm();
    }
  });
  show($('#history-status'), box);
  first.focus();
}

/** Change time: a small form in History's status region -> reschedule. */
function askReschedule(id) {
  const c = campaigns.get(id) || { id };
  const times = c.times || {};
  const zones = deps.zones ? deps.zones() : { local: THIS_ZONE, names: [] };
  const tz = times.tz || zones.local;
  const names = zones.names.includes(tz) ? zones.names : [tz, ...zones.names];
  const at = el('input', { id: 'history-new-at', type: 'datetime-local', step: '60', value: wallClock(times.at, tz) });
  const zone = el('select', { id: 'history-new-tz' }, names.map((name) => el('option', { value: name, text: name, selected: name === tz })));
  const save = el('button', { type: 'button', class: 'primary', id: 'history-save-time', text: 'Save the new time' });
  const keep = el('button', { type: 'button', id: 'history-keep-time', text: 'Keep the time' });
  const problem = el('div', { id: 'history-time-problem', role: 'status' });
  keep.addEventListener('click', closeForm);
  save.addEventListener('click', () => withBusy(save, async () => {
    const result = await call('reschedule', { campaign: id, at: at.value.replace('T', ' ').slice(0, 16), tz: zone.value });
    if (!result.ok) {
      show(problem, errorBlock(result.error));
      at.focus();
      return;
    }
    const d = result.data || {};
    show($('#history-status'), el('p', { class: 'ok-line', text: `${d.words || 'Scheduled'} (campaign ${id}).` }));
    await refreshHistory({ quiet: true });
    $('#history-refresh').focus();
  }));
  const box = el('div', { class: 'confirm', id: 'history-reschedule', role: 'group', 'aria-labelledby': 'history-reschedule-question' },
    el('p', { id: 'history-reschedule-question', class: 'confirm-question', text: `Change the time of “${c.subject || id}”` }),
    el('div', { class: 'history-reschedule' },
      el('div', { class: 'field' }, el('label', { for: 'history-new-at', text: 'New date and time' }), at),
      el('div', { class: 'field' }, el('label', { for: 'history-new-tz', text: 'Time zone' }), zone),
      el('div', { class: 'actions' }, save, keep)),
    problem);
  openForm(box, at);
}

/** Change message: a scheduled campaign's subject and body, in History's status region -> reschedule. */
function askMessage(id) {
  const c = campaigns.get(id) || { id };
  const m = (c.times && c.times.message) || { subject: '', body: '', format: 'html' };
  const subject = el('input', { id: 'history-new-subject', type: 'text', value: m.subject });
  const body = el('textarea', { id: 'history-new-body', rows: '8', spellcheck: 'true' });
  body.value = m.body;
  const save = el('button', { type: 'button', class: 'primary', id: 'history-save-message', text: 'Save the message' });
  const keep = el('button', { type: 'button', id: 'history-keep-message', text: 'Keep it as it is' });
  const problem = el('div', { id: 'history-message-problem', role: 'status' });
  keep.addEventListener('click', closeForm);
  save.addEventListener('click', () => withBusy(save, async () => {
    const message = { subject: subject.value, [m.format === 'text' ? 'text' : 'html']: body.value };
    const result = await call('reschedule', { campaign: id, message });
    if (!result.ok) {
      show(problem, errorBlock(result.error));
      subject.focus();
      return;
    }
    show($('#history-status'), el('p', { class: 'ok-line', text: `Message changed; ${String((result.data || {}).words || 'scheduled').replace(/^S/, 's')} (campaign ${id}).` }));
    await refreshHistory({ quiet: true });
    $('#history-refresh').focus();
  }));
  const box = el('div', { class: 'confirm', id: 'history-edit-message', role: 'group', 'aria-labelledby': 'history-edit-question' },
    el('p', { id: 'history-edit-question', class: 'confirm-question', text: `Change the message of “${c.subject || id}” before it goes` }),
    el('div', { class: 'field' }, el('label', { for: 'history-new-subject', text: 'New subject' }), subject),
    el('div', { class: 'field' }, el('label', { for: 'history-new-body', text: m.format === 'text' ? 'New message (plain text)' : 'New message (HTML)' }), body),
    el('div', { class: 'actions' }, save, keep),
    problem);
  openForm(box, subject);
}

/** Cancel a scheduled or waiting campaign (or a finished one's follow-ups not sent yet). */
function askCancel(id) {
  const c = campaigns.get(id) || { id };
  const times = c.times || {};
  const onlySteps = c.state === 'finished';
  const yes = el('button', { type: 'button', id: 'history-cancel-yes', text: onlySteps ? 'Yes, cancel the follow-ups' : 'Yes, cancel it' });
  const no = el('button', { type: 'button', id: 'history-cancel-no', class: 'primary', text: onlySteps ? 'Keep them' : 'Keep it' });
  const keep = () => {
    show($('#history-status'));
    $('#history-refresh').focus();
  };
  no.addEventListener('click', keep);
  yes.addEventListener('click', () => withBusy(yes, async () => {
    const result = await call('cancel_scheduled', { campaign: id });
    if (!result.ok) {
      show($('#history-status'), el('p', { class: 'fail-line', text: 'Not cancelled.' }), errorBlock(result.error));
      return;
    }
    const d = result.data || {};
    const parts = [];
    if (num(d.skipped)) parts.push(`${plural(num(d.skipped), 'recipient')} not sent`);
    if (num(d.follow_ups_cancelled)) parts.push(`${plural(num(d.follow_ups_cancelled), 'follow-up')} cancelled`);
    show($('#history-status'), el('p', { class: 'ok-line', text: `Cancelled${parts.length ? `: ${parts.join(', ')}` : ''}.` }));
    if (deps.onCancelled && !onlySteps) deps.onCancelled(id);
    await refreshHistory({ quiet: true });
    $('#history-refresh').focus();
  }));
  const what = c.state === 'scheduled' && times.at ? `scheduled for ${whenWords(times.at, times.tz)}`
    : String(STATE_WORDS[c.state] || c.state).toLowerCase();
  show($('#history-status'), confirmBox({
    id: 'history-cancel-confirm',
    question: onlySteps
      ? `Cancel the follow-ups of “${c.subject || id}” not sent yet?`
      : `Cancel “${c.subject || id}” (${what})? Nothing more is sent, and its follow-ups are cancelled too.`,
    buttons: [yes, no],
    onEscape: keep,
  }));
  no.focus();
}
