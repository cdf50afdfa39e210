// Recipients section: paste or import a list, show the bridge's preview (counts, table,
// invalid rows, duplicates, addresses on the suppression list), pick the email and name
// columns, list the fields usable in the message.

import { call, transportMode } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, plural, breakable } from './dom.js';

const MAX_LISTED = 200; // invalid/duplicate rows listed; the rest are counted

let nativeDialogs = false;
let onPreview = () => {};
let current = null;
// The email column the user picked (null: found automatically), as the bridge keeps it.
let chosenEmailColumn = null;

export function initRecipients(info, { onPreviewChange }) {
  nativeDialogs = !!info.native_dialogs && transportMode() === 'window';
  onPreview = onPreviewChange;
  const fileInput = $('#recipients-file');
  if (nativeDialogs) $('.file-input-wrap').hidden = true;

  $('#use-paste').addEventListener('click', (event) => withBusy(event.currentTarget, usePasted));
  $('#import-file').addEventListener('click', (event) => {
    if (nativeDialogs) withBusy(event.currentTarget, chooseNative);
    else fileInput.click();
  });
  fileInput.addEventListener('change', () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) withBusy($('#import-file'), () => importFile(file)).finally(() => { fileInput.value = ''; });
  });
  $('#email-column').addEventListener('change', (event) => withBusy(event.currentTarget, changeColumn));
  $('#name-column').addEventListener('change', (event) => withBusy(event.currentTarget, changeNameColumn));

  // A file dropped anywhere on the window is imported as the recipient list. Without this the
  // webview would navigate to the dropped file and the app would disappear.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
    if (file) withBusy($('#import-file'), () => importFile(file));
  });
}

/** How many valid addresses the current list has (null before any list). */
export function recipientCount() {
  return current && current.counts && Number.isFinite(current.counts.valid) ? current.counts.valid : null;
}

const IDENTIFIER = /^[\p{L}_][\p{L}\p{N}_]*$/u;

/** Fields a template can name as {{ field }}: columns like "E-mail Address" come with an alias (e_mail_address). */
export function templateFields(preview) {
  const fields = Array.isArray(preview.fields) ? preview.fields.filter((f) => typeof f === 'string') : [];
  const usable = fields.filter((f) => IDENTIFIER.test(f));
  return usable.length ? usable : fields;
}

function status() {
  return $('#recipients-summary');
}

/** "Reading …" with the core's progress (import-progress events) and a Cancel button. */
function reading(text) {
  const done = el('span', { id: 'import-progress', text: '' });
  const cancel = el('button', { type: 'button', id: 'import-cancel', class: 'link-button', text: 'Cancel import' });
  cancel.addEventListener('click', () => {
    cancel.disabled = true;
    call('cancel_import', {});
  });
  return el('p', { class: 'busy' }, text, ' ', done, ' ', cancel);
}

window.addEventListener('import-progress', (event) => {
  const d = event.detail || {};
  const shown = document.getElementById('import-progress');
  if (shown && Number.isFinite(d.done) && Number.isFinite(d.total) && d.total > 0) {
    shown.textContent = `${Math.min(100, Math.floor((100 * d.done) / d.total))}% read`;
  }
});

async function usePasted() {
  const text = $('#paste').value;
  if (!text.trim()) {
    show(status(), el('p', { class: 'fail-line', text: 'Paste some addresses first.' }));
    $('#paste').focus();
    return;
  }
  show(status(), reading('Reading the pasted addresses…'));
  handle(await call('import_recipients_text', { text, email_column: null }), { fresh: true });
}

async function chooseNative() {
  show(status(), busyLine('Choose a file in the dialog…'));
  const result = await call('choose_recipients_file', { email_column: null });
  if (result.ok && result.data === null) {
    if (current) renderPreview(current);
    else show(status(), el('p', { class: 'hint', text: 'No file chosen.' }));
    return;
  }
  handle(result, { fresh: true });
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

async function importFile(file) {
  show(status(), reading(`Reading ${file.name}…`));
  let data;
  try {
    data = toBase64(await file.arrayBuffer());
  } catch (err) {
    show(status(), errorBlock({ title: 'Could not read the file', message: String((err && err.message) || err), fix: ['Choose the file again, or save it as CSV first.'] }));
    return;
  }
  handle(await call('import_recipients_data', { name: file.name, data_base64: data, email_column: null }), { fresh: true });
}

async function changeColumn() {
  const column = $('#email-column').value;
  show(status(), busyLine(`Reading addresses from column “${column}”…`));
  const result = await call('set_email_column', { column });
  if (result.ok) chosenEmailColumn = column;
  handle(result);
}

async function changeNameColumn() {
  const column = $('#name-column').value || null;
  show(status(), busyLine(column ? `Reading names from column “${column}”…` : 'Finding the name column…'));
  handle(await call('set_name_column', { column }));
}

/**
 * Read the current list again (after the suppression list changed), so the counts and the
 * "Never mailed" rows are up to date. Nothing to do before a list was added.
 */
/** A list the core read again at start (the draft's): shown as if just imported. */
export function showList(preview) {
  handle({ ok: true, data: preview }, { fresh: true });
}

/** Start a new campaign: no list. */
export function clearList() {
  current = null;
  show(status());
  $('#recipients-details').hidden = true;
  onPreview({ counts: {}, columns: [], fields: [] });
}

export async function refreshPreview() {
  if (!current) return;
  // The column the user chose, or null when it was found automatically: a list pasted
  // without a header row has no real column to name.
  const result = await call('set_email_column', { column: chosenEmailColumn });
  if (result.ok) handle(result);
}

function handle(result, { fresh = false } = {}) {
  if (fresh && result.ok) chosenEmailColumn = null;
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    if (current) {
      $('#email-column').value = current.email_column ?? '';
      $('#name-column').value = current.name_column ?? '';
    }
    return;
  }
  if (!result.data) return;
  current = result.data;
  renderPreview(current);
  onPreview(current);
}

function renderPreview(p) {
  const counts = p.counts || {};
  const valid = counts.valid || 0;
  const invalid = counts.invalid || 0;
  const duplicates = counts.duplicates || 0;
  const suppressed = counts.suppressed || 0;
  show(status(),
    el('p', { class: 'source' }, el('span', { class: 'label', text: 'Source: ' }), p.source || ''),
    el('p', { class: 'counts-line' },
      el('strong', { class: 'count-valid', text: plural(valid, 'valid address', 'valid addresses') }), ' · ',
      el('span', { class: invalid ? 'count-invalid warn' : 'count-invalid', text: `${invalid} invalid` }), ' · ',
      el('span', { class: 'count-duplicates', text: plural(duplicates, 'duplicate') }),
      suppressed ? [' · ', el('span', { class: 'count-suppressed', text: `${suppressed} never mailed (suppression list)` })] : null),
    ...(Array.isArray(p.warnings) ? p.warnings : []).map((w) => el('p', { class: 'warn', text: `Warning: ${w}` })));

  $('#recipients-details').hidden = false;

  // Email column picker.
  const select = $('#email-column');
  const columns = Array.isArray(p.columns) ? [...p.columns] : [];
  if (p.email_column && !columns.includes(p.email_column)) columns.unshift(p.email_column);
  select.replaceChildren(...columns.map((c) => el('option', { value: c, text: c })));
  if (columns.length) select.value = p.email_column ?? columns[0];
  select.disabled = columns.length < 2;

  // Name column picker: "(automatic)" lets the bridge find one (name, first + last name).
  const nameSelect = $('#name-column');
  const nameColumns = columns.filter((c) => c !== p.email_column);
  if (p.name_column && !nameColumns.includes(p.name_column)) nameColumns.unshift(p.name_column);
  nameSelect.replaceChildren(el('option', { value: '', text: '(automatic)' }),
    ...nameColumns.map((c) => el('option', { value: c, text: c })));
  nameSelect.value = p.name_column ?? '';
  nameSelect.disabled = nameColumns.length === 0;

  // Fields usable in the message.
  const fields = templateFields(p);
  const fieldsList = $('#fields-list');
  if (fields.length) {
    show(fieldsList, fields.flatMap((name, i) => [i ? ' ' : null, el('code', { class: 'field-chip', text: `{{ ${name} }}` })]));
  } else {
    show(fieldsList, el('span', { class: 'hint', text: 'None besides the address: this list has no other columns.' }));
  }

  renderTable(p, columns);
  renderIssues(p);
}

const normalise = (name) => String(name).toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');

function tableKeys(p, columns) {
  const rows = Array.isArray(p.rows) ? p.rows : [];
  const sample = rows.find((r) => r && r.fields && Object.keys(r.fields).length);
  if (!sample) return [];
  const has = (list) => list.length && list.filter((k) => k !== p.email_column).every((k) => k in sample.fields);
  const fields = Array.isArray(p.fields) ? p.fields : [];
  const all = [...new Set([...(has(columns) ? columns : has(fields) ? fields : Object.keys(sample.fields)), p.email_column].filter(Boolean))];
  // Template-friendly aliases ("First Name" -> first_name) repeat a column: show it once.
  return all.filter((k) => k !== p.email_column && k !== 'email'
    && !all.some((other) => other !== k && normalise(other) === k));
}

function renderTable(p, columns) {
  const table = $('#recipients-table');
  const rows = Array.isArray(p.rows) ? p.rows : [];
  const keys = tableKeys(p, columns);
  const emailHeader = p.email_column || 'Email';
  const head = el('tr', {}, el('th', { scope: 'col', text: 'Line' }), el('th', { scope: 'col', text: emailHeader }),
    keys.map((k) => el('th', { scope: 'col', text: k })));
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  const frag = document.createDocumentFragment();
  for (const row of rows) {
    const fieldValues = (row && row.fields) || {};
    frag.append(el('tr', {},
      el('td', { class: 'num', text: row.line ?? '' }),
      el('td', { class: 'address' }, breakable(row.email ?? '')),
      keys.map((k) => el('td', { text: fieldValues[k] ?? '' }))));
  }
  body.replaceChildren(frag);
  const valid = (p.counts && p.counts.valid) || rows.length;
  $('#recipients-table-heading').textContent = rows.length < valid
    ? `Preview (first ${rows.length} of ${valid})`
    : 'Preview';
  $('#recipients-table-block').hidden = rows.length === 0;
}

function renderIssues(p) {
  const rejected = Array.isArray(p.rejected) ? p.rejected : [];
  const dupes = Array.isArray(p.duplicates) ? p.duplicates : [];
  const rejectedTotal = Math.max(rejected.length, (p.counts && p.counts.invalid) || 0);
  const dupesTotal = Math.max(dupes.length, (p.counts && p.counts.duplicates) || 0);

  $('#rejected-block').hidden = rejectedTotal === 0;
  show($('#rejected-list'), rejected.slice(0, MAX_LISTED).map((r) => el('li', {},
    el('span', { class: 'line-ref', text: `Line ${r.line}: ` }),
    el('span', { class: 'value', text: r.value ? r.value : '(empty)' }), ' - ',
    el('span', { class: 'reason', text: r.problem || r.reason || '' }))),
    rejectedTotal > MAX_LISTED ? el('li', { class: 'hint', text: `…and ${rejectedTotal - Math.min(rejected.length, MAX_LISTED)} more` }) : null);

  const suppressed = Array.isArray(p.suppressed) ? p.suppressed : [];
  const suppressedTotal = Math.max(suppressed.length, (p.counts && p.counts.suppressed) || 0);
  $('#suppressed-block').hidden = suppressedTotal === 0;
  show($('#suppressed-list'), suppressed.slice(0, MAX_LISTED).map((d) => el('li', {},
    el('span', { class: 'line-ref', text: `Line ${d.line}: ` }),
    el('span', { class: 'value', text: d.email || '' }),
    // The heading already says "suppression list": "suppressed: unsubscribed" reads "unsubscribed".
    d.reason ? [' — ', el('span', { class: 'reason', text: String(d.reason).replace(/^suppressed:\s*/i, '') })] : null)),
    suppressedTotal > Math.min(suppressed.length, MAX_LISTED)
      ? el('li', { class: 'hint', text: `…and ${suppressedTotal - Math.min(suppressed.length, MAX_LISTED)} more` }) : null);

  $('#duplicates-block').hidden = dupesTotal === 0;
  show($('#duplicates-list'), dupes.slice(0, MAX_LISTED).map((d) => el('li', {},
    el('span', { class: 'line-ref', text: `Line ${d.line}: ` }),
    el('span', { class: 'value', text: d.email || '' }),
    el('span', { class: 'reason', text: d.first_line ? ` (same as line ${d.first_line})` : '' }))),
    dupesTotal > MAX_LISTED ? el('li', { class: 'hint', text: `…and ${dupesTotal - Math.min(dupes.length, MAX_LISTED)} more` }) : null);
}
