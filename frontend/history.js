// History: past campaigns from the journal, each one's recipients, and follow-up runs
// (resume an interrupted or stopped campaign, resend to its failed / uncertain recipients).
// Runs started here are followed by the Send section and the Activity log like a Send.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, actionButton, confirmBox, plural, breakable } from './dom.js';

const DETAIL_ROWS = 200;
const UNCERTAIN_SHOWN = 50;
const STATE_WORDS = {
  running: 'Running', paused: 'Paused', stopped: 'Stopped', finished: 'Finished',
  cancelled: 'Cancelled', failed: 'Failed', interrupted: 'Interrupted',
};
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
  const t = Date.parse(c && c.resume_after);
  return Number.isFinite(t) && t > Date.now() ? new Date(t) : null;
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
  for (const c of list) frag.append(campaignRow(c));
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
  if (canResume(c)) buttons.push(actionButton('Resume', `campaign ${id}`, { dataset: { action: 'resume', id } }));
  if (t.failed > 0) buttons.push(actionButton('Resend to failed', `of campaign ${id}`, { dataset: { action: 'resend', id } }));
  if (t.uncertain > 0) {
    buttons.push(actionButton('Resend to failed and uncertain', `of campaign ${id}`, { dataset: { action: 'resend-uncertain', id } }));
  }
  if (t.sent + t.answered > 0 && c.trackable !== false) buttons.push(actionButton('Check replies and bounces', `of campaign ${id}`, { dataset: { action: 'track', id } }));
  const rest = [t.bounced ? `${t.bounced} bounced` : null, t.replied ? `${t.replied} replied` : null,
    t.autoReplied ? `${t.autoReplied} auto-repl${t.autoReplied === 1 ? 'y' : 'ies'}` : null,
    t.notSent ? `${t.notSent} not sent` : null, t.uncertain ? `${t.uncertain} uncertain` : null,
    t.skipped ? `${t.skipped} skipped` : null].filter(Boolean);
  return el('tr', { dataset: { id, state: String(c.state ?? '') } },
    el('td', { class: 'history-campaign' }, el('span', { class: 'history-subject', text: c.subject || '(no subject)' }),
      el('span', { class: 'history-date', text: formatTime(c.created) })),
    el('td', { class: 'address' }, breakable(c.account_words ?? c.account ?? '')),
    el('td', { class: 'history-state', text: (STATE_WORDS[c.state] || String(c.state ?? ''))
      + (quotaLifts(c) ? ` (quota: can continue after ${quotaLifts(c).toLocaleString()})` : '') }),
    el('td', { class: 'num history-sent', text: String(t.sent) }),
    el('td', { class: 'num history-failed', text: String(t.failed) }),
    el('td', { text: rest.length ? rest.join(' · ') : '0' }),
    el('td', { class: 'history-actions' }, buttons));
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
