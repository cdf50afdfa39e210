// Review & send's When: send now or at a date and time (in a time zone shown and changeable),
// a send window, each recipient's local time, up to 3 follow-ups; what the core says of those
// times (review.when); and the timer that sends while the app is closed. The core decides
// everything (backend/core/schedules.py): this module only gathers the fields and shows words.

import { call } from './api.js';
import { $, $$, el, show, errorBlock, withBusy } from './dom.js';

const MAX_FOLLOW_UPS = 3;
// Kept in the saved draft (the core keeps these as short text: backend/inputs DRAFT_SEND_FIELDS).
const DRAFT_FIELDS = ['when-at', 'when-tz', 'when-window', 'when-local-time', 'when-default-tz', 'when-warmup-steps'];

let deps = null;
let localZone = 'UTC';
let counter = 0; // ids of follow-up fields stay unique as steps are added and removed

/** deps: getMessage() -> {subject, format}, onChange() (ask the core again, save the draft). */
export function initSchedule(info, dependencies) {
  deps = dependencies;
  const zones = (info && info.zones) || {};
  localZone = String(zones.local || 'UTC');
  const names = Array.isArray(zones.names) ? zones.names.map(String) : [];
  if (!names.includes(localZone)) names.unshift(localZone);
  for (const select of [$('#when-tz'), $('#when-default-tz')]) {
    select.replaceChildren(...names.map((name) => el('option', { value: name, text: name === localZone ? `${name} (this computer)` : name })));
    select.value = localZone;
  }
  $('#when-at').value = tomorrowAt9();
  for (const radio of $$('input[name="when"]')) radio.addEventListener('change', toggle);
  $('#when-local').addEventListener('change', toggle);
  $('#when-warmup').addEventListener('change', toggle);
  $('#add-follow-up').addEventListener('click', () => {
    const step = addFollowUp();
    step.querySelector('input').focus();
    changed();
  });
  $('#timer-box').addEventListener('toggle', () => { if ($('#timer-box').open) timerStatus(); });
  $('#timer-action').addEventListener('click', (event) => withBusy(event.currentTarget, timerAction));
  for (const id of ['when-at', 'when-tz', 'when-window', 'when-local-time', 'when-default-tz', 'when-warmup-steps']) {
    $(`#${id}`).addEventListener('input', summarise);
    $(`#${id}`).addEventListener('change', summarise);
  }
  toggle();
}

function tomorrowAt9() {
  const d = new Date();
  d.setDate(d.getDate() + 1);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T09:00`;
}

function changed() {
  toggle();
  if (deps && deps.onChange) deps.onChange();
}

function toggle() {
  const later = $('#when-later').checked;
  $('#when-later-fields').hidden = !later;
  $('#when-local-fields').hidden = !$('#when-local').checked;
  $('#when-warmup-fields').hidden = !$('#when-warmup').checked;
  $('#add-follow-up').disabled = followUps().length >= MAX_FOLLOW_UPS;
  summarise();
  if (deps && deps.onLabel) deps.onLabel(isScheduled());
}

/** The time zones app_info gave: {local, names} (History's Change time uses them too). */
export function zoneList() {
  const names = [...$('#when-tz').options].map((o) => o.value);
  return { local: localZone, names };
}

/** A time is chosen: the Send button reads Schedule. */
export function isScheduled() {
  return $('#when-later').checked && Boolean($('#when-at').value);
}

function summarise() {
  const parts = [];
  const window = $('#when-window').value.trim();
  if (window) parts.push(window);
  if ($('#when-local').checked) parts.push(`${$('#when-local-time').value || '09:00'} local time`);
  if ($('#when-warmup').checked) parts.push('warm-up');
  $('#when-more-summary').textContent = parts.length ? parts.join(', ') : 'any time';
  const n = followUps().length;
  $('#follow-ups-summary').textContent = n ? `${n}` : 'none';
}

function followUps() {
  return $$('#follow-ups .follow-up');
}

function renumber() {
  followUps().forEach((box, k) => {
    box.querySelector('legend').textContent = `Follow-up ${k + 1}`;
    for (const hidden of box.querySelectorAll('.step-name')) hidden.textContent = `Follow-up ${k + 1} `;
    box.querySelector('.step-name-after').textContent = ` follow-up ${k + 1}`;
    box.dataset.step = String(k + 1);
  });
}

/** One follow-up step's fields; values: {after_days, subject, body, expire_days}. */
function addFollowUp(values = {}) {
  const id = `fu${++counter}`;
  const subject = deps ? String(deps.getMessage().subject || '') : '';
  const label = (forId, words) => el('label', { for: forId }, el('span', { class: 'visually-hidden step-name' }), words);
  const remove = el('button', { type: 'button', class: 'link-button', text: 'Remove' });
  const box = el('fieldset', { class: 'follow-up' },
    el('legend', { text: 'Follow-up' }),
    el('div', { class: 'when-row' },
      el('div', { class: 'field' }, label(`${id}-days`, 'Days after'),
        el('input', { id: `${id}-days`, type: 'number', min: '0.5', max: '90', step: 'any', inputmode: 'decimal', value: String(values.after_days ?? 3), 'data-key': 'after_days' })),
      el('div', { class: 'field' }, label(`${id}-expire`, 'Skip if late by more than (days)'),
        el('input', { id: `${id}-expire`, type: 'number', min: '0', max: '30', step: 'any', inputmode: 'decimal', value: String(values.expire_days ?? 2), 'data-key': 'expire_days' }))),
    el('div', { class: 'field' }, label(`${id}-subject`, 'Subject'),
      el('input', { id: `${id}-subject`, type: 'text', placeholder: subject ? `Re: ${subject}` : 'Re: <the subject>', value: values.subject || '', 'data-key': 'subject' })),
    el('div', { class: 'field' }, label(`${id}-body`, 'Message'),
      el('textarea', { id: `${id}-body`, rows: '4', 'data-key': 'body', spellcheck: 'true' })),
    el('div', { class: 'actions' }, remove));
  box.querySelector('textarea').value = values.body || '';
  remove.append(el('span', { class: 'visually-hidden step-name-after' }));
  remove.addEventListener('click', () => {
    const next = box.nextElementSibling || box.previousElementSibling;
    box.remove();
    renumber();
    changed();
    (next ? next.querySelector('input') : $('#add-follow-up')).focus();
  });
  $('#follow-ups').append(box);
  renumber();
  return box;
}

/** params.schedule as backend/jsonapi.schedule_input takes it. */
export function getSchedule() {
  const s = {};
  if ($('#when-later').checked && $('#when-at').value) {
    s.at = $('#when-at').value.replace('T', ' ').slice(0, 16);
    s.tz = $('#when-tz').value;
  } else {
    s.tz = $('#when-tz').value; // the send window's zone too
  }
  const window = $('#when-window').value.trim();
  if (window) s.window = window;
  if ($('#when-local').checked) {
    s.local_time = $('#when-local-time').value || '09:00';
    s.default_tz = $('#when-default-tz').value;
  }
  if ($('#when-warmup').checked) s.warmup = $('#when-warmup-steps').value;
  const format = deps ? deps.getMessage().format : 'html';
  const steps = followUps().map((box) => {
    const get = (key) => box.querySelector(`[data-key="${key}"]`).value;
    const number = (key, fallback) => {
      const v = Number(get(key));
      return get(key).trim() !== '' && Number.isFinite(v) ? v : fallback;
    };
    return { after_days: number('after_days', 0), subject: get('subject').trim(), body: get('body'),
      format: format === 'text' ? 'text' : 'html', expire_days: number('expire_days', 2) };
  });
  if (steps.length) s.follow_ups = steps;
  return s;
}

/** The When fields the draft keeps (short text only; follow-ups' messages are not kept). */
export function draftValues() {
  const values = { when: $('#when-later').checked ? 'later' : 'now', 'when-local': $('#when-local').checked ? 'yes' : '',
    'when-warmup': $('#when-warmup').checked ? 'yes' : '' };
  for (const id of DRAFT_FIELDS) {
    const v = $(`#${id}`).value;
    if (v.length <= 40) values[id] = v;
  }
  return values;
}

export function restoreDraft(values) {
  if (!values) return;
  for (const id of DRAFT_FIELDS) {
    const input = $(`#${id}`);
    if (typeof values[id] !== 'string') continue;
    if (input.tagName === 'SELECT' && ![...input.options].some((o) => o.value === values[id])) continue;
    input.value = values[id];
  }
  if (values.when === 'later') $('#when-later').checked = true;
  if (typeof values['when-local'] === 'string') $('#when-local').checked = values['when-local'] === 'yes';
  if (typeof values['when-warmup'] === 'string') $('#when-warmup').checked = values['when-warmup'] === 'yes';
  toggle();
}

/** Start a new campaign: send now, no window, no local time, no follow-ups. */
export function resetSchedule() {
  $('#when-now').checked = true;
  $('#when-at').value = tomorrowAt9();
  $('#when-tz').value = localZone;
  $('#when-default-tz').value = localZone;
  $('#when-window').value = '';
  $('#when-local').checked = false;
  $('#when-local-time').value = '09:00';
  $('#when-warmup').checked = false;
  $('#follow-ups').replaceChildren();
  toggle();
}

// -- the core's words ------------------------------------------------------------------------

/** Where a problem's field is shown: the field the core names. */
function problemPlace(field) {
  const f = String(field || '');
  const step = /^follow_ups\[(\d+)\]/.exec(f);
  if (step) {
    const box = followUps()[Number(step[1]) - 1];
    if (box) return { after: box.querySelector('legend'), open: $('#follow-ups-box'), input: box.querySelector(`[data-key="${f.split('.').pop()}"]`) };
  }
  if (f === 'follow_ups') return { after: $('#add-follow-up'), open: $('#follow-ups-box') };
  if (f === 'window') return { after: $('#when-window'), open: $('#when-more'), input: $('#when-window') };
  if (f === 'local_time' || f === 'default_tz' || ($('#when-local').checked && !['at', 'tz'].includes(f))) {
    return { after: $('#when-local-fields'), open: $('#when-more'), input: f === 'local_time' ? $('#when-local-time') : null };
  }
  return { after: $('#when-later').checked ? $('#when-later-fields') : $('#when-choice'), input: f === 'at' ? $('#when-at') : f === 'tz' ? $('#when-tz') : null };
}

/** Add (or take away) the problem line from a field's description, keeping its hint. */
function describedBy(input, on) {
  const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter((x) => x && x !== 'when-problem');
  if (on) ids.push('when-problem');
  if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
  else input.removeAttribute('aria-describedby');
}

/** Review & send's answer: the campaign's times in words, and a problem next to its field. */
export function renderWhen(when) {
  const w = when || {};
  const subject = deps ? String(deps.getMessage().subject || '') : '';
  for (const input of $$('#follow-ups [data-key="subject"]')) input.placeholder = subject ? `Re: ${subject}` : 'Re: <the subject>';
  const line = $('#when-problem');
  for (const bad of $$('#when-box [aria-invalid="true"]')) {
    bad.removeAttribute('aria-invalid');
    describedBy(bad, false);
  }
  if (w.problem) {
    const place = problemPlace(w.field);
    place.after.insertAdjacentElement('afterend', line);
    if (place.open) place.open.open = true;
    if (place.input) {
      place.input.setAttribute('aria-invalid', 'true');
      describedBy(place.input, true);
    }
    line.textContent = `When: ${w.problem}`;
    line.hidden = false;
  } else {
    line.hidden = true;
    line.textContent = '';
  }
  const rows = [];
  if (!w.problem && w.starts) {
    rows.push(['Starts', w.starts === 'now' ? 'now' : w.starts]);
    if (w.window) rows.push(['Send window', w.window]);
    if (w.local_time) rows.push(['Local time', `${w.local_time} in each recipient’s time zone`]);
    if (w.ends) rows.push(['Ends', `about ${String(w.ends).replace(/^on /, '')}`]); // "about Mon 7 Dec", "about tomorrow"
    (Array.isArray(w.follow_ups) ? w.follow_ups : []).forEach((words, k) => rows.push([`Follow-up ${k + 1}`, String(words)]));
  }
  // "Starts now" alone says nothing the Send button does not: shown only with something more.
  const worth = rows.length > 1 || (rows.length === 1 && w.starts !== 'now');
  show($('#when-summary'), worth ? rows.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]) : null);
}

// -- the timer -------------------------------------------------------------------------------

let timerInstalled = false;

function renderTimer(d) {
  timerInstalled = Boolean(d.installed);
  $('#timer-status').textContent = String(d.words || '');
  const button = $('#timer-action');
  button.hidden = d.kind === 'none';
  button.textContent = timerInstalled ? 'Remove timer' : 'Install timer';
  const lines = Array.isArray(d.remove_by_hand) ? d.remove_by_hand : [];
  $('#timer-by-hand').hidden = !(timerInstalled && lines.length);
  $('#timer-by-hand-lines').textContent = lines.join('\n');
}

async function timerStatus() {
  const result = await call('timer', { action: 'status' });
  if (!result.ok) show($('#timer-status'), errorBlock(result.error));
  else renderTimer(result.data || {});
}

async function timerAction() {
  const result = await call('timer', { action: timerInstalled ? 'remove' : 'install' });
  if (!result.ok) show($('#timer-status'), errorBlock(result.error));
  else renderTimer(result.data || {});
}
