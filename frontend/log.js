// Activity log: one row per recipient, created on its first event and updated in place.
// Events are queued and applied once per animation frame, so 10,000 recipients cost one
// small DOM update per frame, never a re-render of the table. Past VIRTUAL_FROM rows the
// table is virtual: every recipient is kept as data, only the rows in view (and a few
// around them) are elements, between two spacers as tall as the rows they stand for, so
// 100,000 rows scroll as smoothly as 100.

import { call } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, breakable } from './dom.js';

const FINAL = new Set(['sent', 'failed', 'uncertain', 'skipped']);
const SHORT_LOG = 40; // up to this many visible rows the log box is as tall as its rows (up to its maximum)
const NOTHING_YET = 'Nothing sent yet.';
const LABELS = {
  sending: 'Sending…',
  sent: 'Sent',
  failed: 'Failed',
  deferred: 'Retrying',
  skipped: 'Not sent',
  uncertain: 'Uncertain',
  bounced: 'Bounced',
  replied: 'Replied',
  auto_replied: 'Auto-reply',
};
// Read back from the mailbox after sending (Check replies and bounces): the row's label changes,
// the run's counts (what was sent) do not.
const AFTER_SEND = new Set(['bounced', 'replied', 'auto_replied']);

const VIRTUAL_FROM = 500; // rows; fewer are all elements (each can show its fix steps in place)
const OVERSCAN = 15; // rows rendered above and below the view in the virtual table

let deps = null;
let tbody = null;
let table = null;
let scroller = null;
let campaignId = null;
let follow = true;
const rows = new Map(); // current -> row record
let order = []; // row records in display order
let virtual = false;
let rowHeight = 0; // px, measured once in the virtual table (its rows have one fixed height)
let failedList = null; // the failed rows in order, while "Failed only" is on in the virtual table
let windowed = new Set(); // records rendered in the virtual table now
let scrollFrame = 0;
const topSpacer = el('tr', { class: 'spacer', 'aria-hidden': 'true' });
const bottomSpacer = el('tr', { class: 'spacer', 'aria-hidden': 'true' });
let queue = [];
let rafId = 0;
let timerId = 0;
const counts = { sent: 0, failed: 0, uncertain: 0, skipped: 0 };
let emptyText = NOTHING_YET;
let failedOnly = false;
const flushListeners = [];

export function initLog(dependencies) {
  deps = dependencies;
  tbody = $('#log');
  table = $('#log-table');
  scroller = $('#log-scroll');
  // Follow new rows while the log is scrolled to the bottom; stop when the user scrolls up.
  // Tracked on scroll so a flush never has to measure the table.
  scroller.addEventListener('scroll', () => {
    follow = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    if (virtual && !scrollFrame) scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; renderWindow(); });
  }, { passive: true });
  $('#failed-only').addEventListener('change', (event) => {
    failedOnly = event.currentTarget.checked;
    table.classList.toggle('failed-only', failedOnly);
    failedList = null;
    updateSize();
    if (virtual) renderWindow();
  });
  // One delegated listener for every "How to fix" button in the table.
  tbody.addEventListener('click', (event) => {
    const button = event.target.closest('button.how-to-fix');
    if (button) toggleFix(button);
  });
  $('#export').addEventListener('click', (event) => withBusy(event.currentTarget, exportResults));
}

/** handler({counts, completed: [ms timestamps of recipients that finished in this flush]}). */
export function onFlush(handler) {
  flushListeners.push(handler);
}

export function currentCampaign() {
  return campaignId;
}

/** Switch to a campaign; a different id (or force: a new run of the same one) clears the log. */
export function setCampaign(id, { force = false } = {}) {
  if (!id || (id === campaignId && !force)) return;
  campaignId = id;
  rows.clear();
  order = [];
  windowed = new Set();
  failedList = null;
  setVirtual(false);
  queue = queue.filter((ev) => ev.campaign === id);
  tbody.replaceChildren();
  $('#log-detail').hidden = true;
  follow = true;
  for (const key of Object.keys(counts)) counts[key] = 0;
  emptyText = NOTHING_YET;
  updateSize();
  $('#export-status').replaceChildren();
}

/** A run ended: with no rows, say why nothing is listed instead of "Nothing sent yet". */
export function setEnded(state, summary) {
  const s = summary || {};
  if (state === 'failed') emptyText = 'Nothing was sent: the run failed before the first message (see the summary above).';
  else if (state === 'cancelled') emptyText = 'Nothing was sent: the run was cancelled before the first message.';
  else if (Number(s.total) === 0) emptyText = 'There was nobody to send to.';
  else emptyText = NOTHING_YET;
  updateSize();
}

function failedRows() {
  if (failedList) return failedList.length;
  let n = 0;
  for (const row of rows.values()) if (row.status === 'failed') n += 1;
  return n;
}

/** The rows the log shows now: all, or the failed ones. */
function shown() {
  if (!failedOnly) return order;
  if (!failedList) failedList = order.filter((row) => row.status === 'failed');
  return failedList;
}

function setVirtual(on) {
  virtual = on;
  table.classList.toggle('virtual', on);
  table.setAttribute('aria-rowcount', String(order.length + 1)); // + the header row
}

/** Switch a grown log to the virtual table: its row elements go, the window renders. */
function becomeVirtual() {
  setVirtual(true);
  for (const row of order) row.tr = null;
  tbody.replaceChildren();
  windowed = new Set();
  renderWindow();
}

/** The virtual table: the rows in view (and OVERSCAN around them) between the spacers. */
function renderWindow() {
  const list = shown();
  if (!rowHeight) {
    const probe = list[0] ? rowElement(list[0]) : null;
    if (probe) {
      tbody.replaceChildren(probe);
      rowHeight = probe.getBoundingClientRect().height || 32;
      probe.remove();
      list[0].tr = null;
    }
  }
  const height = rowHeight || 32;
  const view = scroller.clientHeight || 600;
  const first = Math.max(0, Math.floor(scroller.scrollTop / height) - OVERSCAN);
  const last = Math.min(list.length, first + Math.ceil(view / height) + 2 * OVERSCAN);
  const next = new Set();
  const elements = [];
  for (let i = first; i < last; i += 1) {
    const row = list[i];
    next.add(row);
    elements.push(rowElement(row));
  }
  for (const row of windowed) if (!next.has(row)) row.tr = null; // out of view: data only
  windowed = next;
  topSpacer.style.height = `${first * height}px`;
  bottomSpacer.style.height = `${(list.length - last) * height}px`;
  tbody.replaceChildren(topSpacer, ...elements, bottomSpacer);
}

/** A row's element, made (and painted) when it comes into view. */
function rowElement(row) {
  if (!row.tr) {
    Object.assign(row, createRow(row.key));
    paint(row);
  }
  return row.tr;
}

/**
 * The log's box fits what it shows: hidden with a line of text when no row is visible, as
 * tall as its rows when there are few, a fixed-height scroller (cheap to update at 10,000
 * rows) when there are many.
 */
function updateSize() {
  const visible = failedOnly ? failedRows() : rows.size;
  const empty = visible === 0;
  const note = $('#log-empty');
  const text = rows.size === 0 ? emptyText : 'No failed recipients.';
  if (note.textContent !== text) note.textContent = text;
  note.hidden = !empty;
  scroller.classList.toggle('empty', empty);
  scroller.classList.toggle('short', !empty && visible <= SHORT_LOG);
}

/** Take counts from the bridge (page opened in the middle of a run, or after a reconnect). */
export function setCounts(serverCounts) {
  if (!serverCounts) return;
  for (const key of Object.keys(counts)) {
    if (typeof serverCounts[key] === 'number') counts[key] = serverCounts[key];
  }
}

export function getCounts() {
  return { ...counts };
}

export function queueProgress(event) {
  if (event.campaign && event.campaign !== campaignId) setCampaign(event.campaign);
  queue.push(event);
  if (!rafId) rafId = requestAnimationFrame(flush);
  // requestAnimationFrame pauses in background tabs: still apply the queue now and then.
  if (!timerId) timerId = setTimeout(flush, 250);
}

/** Apply everything queued now (also used before showing the end-of-run summary). */
export function flush() {
  if (rafId) cancelAnimationFrame(rafId);
  if (timerId) clearTimeout(timerId);
  rafId = 0;
  timerId = 0;
  if (!queue.length) return;
  const events = queue;
  queue = [];

  const touched = new Set();
  const fresh = [];
  const completed = [];
  for (const ev of events) {
    const key = Number(ev.current);
    if (!Number.isFinite(key)) continue;
    let row = rows.get(key);
    if (!row) {
      row = { key, tr: null, status: null, event: null, painted: null };
      rows.set(key, row);
      fresh.push(row);
    }
    const before = row.status;
    const after = typeof ev.status === 'string' ? ev.status : 'sending';
    if (AFTER_SEND.has(after)) {
      row.status = after;
      row.event = { ...(row.event || {}), ...ev };
      touched.add(row);
      continue;
    }
    if (FINAL.has(before) && before !== after) counts[before] = Math.max(0, counts[before] - 1);
    if (FINAL.has(after) && before !== after) {
      counts[after] += 1;
      const t = Date.parse(ev.ts);
      completed.push(Number.isFinite(t) ? t : Date.now());
    }
    if ((before === 'failed') !== (after === 'failed')) failedList = null;
    row.status = after;
    row.event = ev;
    touched.add(row);
  }

  if (fresh.length) {
    fresh.sort((a, b) => a.key - b.key);
    order.push(...fresh);
    table.setAttribute('aria-rowcount', String(order.length + 1));
  }
  if (!virtual && order.length > VIRTUAL_FROM) {
    becomeVirtual();
  } else if (virtual) {
    for (const row of touched) if (row.tr) paint(row);
    renderWindow();
    if (follow && fresh.length) {
      scroller.scrollTop = scroller.scrollHeight;
      renderWindow();
    }
  } else {
    for (const row of fresh) Object.assign(row, createRow(row.key));
    for (const row of touched) paint(row);
    if (fresh.length) {
      const frag = document.createDocumentFragment();
      for (const row of fresh) frag.append(row.tr);
      tbody.append(frag);
    }
  }
  if (fresh.length || failedOnly) updateSize();
  if (follow && fresh.length) scroller.scrollTop = scroller.scrollHeight;

  const snapshot = { counts: { ...counts }, completed };
  for (const listener of flushListeners) listener(snapshot);
}

function createRow(key) {
  const num = el('td', { role: 'cell', class: 'num', text: String(key) });
  const recipient = el('td', { role: 'cell', class: 'recipient' });
  const statusCell = el('td', { role: 'cell', class: 'status' });
  const details = el('td', { role: 'cell', class: 'details' });
  const tr = el('tr', { role: 'row', 'aria-rowindex': String(key + 1), dataset: { current: String(key) } },
    num, recipient, statusCell, details);
  return { tr, recipient, statusCell, details, painted: null };
}

function paint(row) {
  const ev = row.event;
  const status = row.status;
  if (row.recipient.textContent !== (ev.recipient ?? '')) row.recipient.replaceChildren(...breakable(ev.recipient ?? ''));
  const paintKey = `${status}\u0000${ev.category ?? ''}\u0000${ev.error ?? ''}\u0000${ev.code ?? ''}`;
  if (row.painted === paintKey) return;
  row.painted = paintKey;
  row.tr.dataset.status = status;
  row.statusCell.textContent = LABELS[status] || status;
  row.details.replaceChildren(...detailsFor(row.key, ev, status));
}

function detailsFor(key, ev, status) {
  const parts = [];
  const code = ev.code ? `${ev.code} ` : '';
  if (status === 'failed' || status === 'uncertain') {
    if (ev.category) parts.push(el('strong', { class: 'category-title', text: deps.categoryTitle(ev.category) }));
    if (ev.error) parts.push(el('span', { class: 'server-reply', text: `${parts.length ? ' — ' : ''}${code}${ev.error}` }));
    else if (status === 'uncertain' && !ev.category) parts.push('The connection dropped after the message was handed over: it may or may not have arrived.');
    if (ev.category) {
      parts.push(' ', el('button', {
        type: 'button',
        class: 'link-button how-to-fix',
        'aria-expanded': 'false',
        'aria-controls': virtual ? 'log-detail' : `fix-${key}`,
        dataset: { current: String(key), category: ev.category },
        text: 'How to fix',
      }));
    }
  } else if (status === 'deferred') {
    parts.push(`Temporary failure, will retry${ev.error ? ': ' + code + ev.error : ''}`);
  } else if (status === 'skipped') {
    parts.push(ev.error || (ev.category ? deps.categoryTitle(ev.category) : 'Not sent'));
  } else if (AFTER_SEND.has(status)) {
    parts.push(status === 'bounced' ? 'Came back as undeliverable (the address is now on the suppression list)'
      : status === 'replied' ? 'They replied' : 'An automatic reply (e.g. out of office)');
  }
  return parts;
}

function toggleFix(button) {
  if (virtual) {
    showDetail(button);
    return;
  }
  const id = button.getAttribute('aria-controls');
  let list = document.getElementById(id);
  const open = button.getAttribute('aria-expanded') === 'true';
  if (!list) {
    const steps = deps.fixStepsFor(button.dataset.category);
    const cause = deps.categoryCause(button.dataset.category);
    list = el('div', { id, class: 'fix-panel', hidden: true },
      cause ? el('p', { class: 'error-cause', text: cause }) : null,
      steps.length ? el('ol', { class: 'fix-steps' }, steps.map((s) => el('li', { text: s }))) : el('p', { text: 'No fix steps are known for this failure.' }));
    button.closest('td').append(list);
  }
  list.hidden = open;
  button.setAttribute('aria-expanded', String(!open));
}

/** The virtual table's rows are one line each: a row's error and fix steps open below the log. */
function showDetail(button) {
  const box = $('#log-detail');
  const row = rows.get(Number(button.dataset.current));
  const ev = (row && row.event) || {};
  const category = button.dataset.category;
  const steps = deps.fixStepsFor(category);
  const cause = deps.categoryCause(category);
  box.replaceChildren(
    el('h3', { text: `#${button.dataset.current} ${ev.recipient ?? ''}: ${deps.categoryTitle(category)}` }),
    ev.error ? el('p', { class: 'server-reply', text: `${ev.code ? `${ev.code} ` : ''}${ev.error}` }) : null,
    cause ? el('p', { class: 'error-cause', text: cause }) : null,
    steps.length ? el('ol', { class: 'fix-steps' }, steps.map((s) => el('li', { text: s }))) : el('p', { text: 'No fix steps are known for this failure.' }));
  box.hidden = false;
  for (const other of tbody.querySelectorAll('button.how-to-fix[aria-expanded="true"]')) other.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-expanded', 'true');
}

async function exportResults() {
  const out = $('#export-status');
  show(out, busyLine('Exporting the results…'));
  const result = await call('export_results');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  const d = result.data;
  if (!d) {
    show(out);
    return;
  }
  if (typeof d.csv === 'string') {
    const blob = new Blob([d.csv], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: d.filename || 'results.csv', class: 'visually-hidden' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    show(out, el('p', { class: 'ok-line', text: `Downloaded ${d.filename || 'results.csv'}.` }));
  } else if (d.path) {
    show(out, el('p', { class: 'ok-line', text: `Saved to ${d.path}` }));
  } else {
    show(out);
  }
}
