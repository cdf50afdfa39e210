// Attachments in Compose: files for everyone (the native dialog in the window, the file field
// in a browser) and per-recipient files named in a column of the list, found in a folder the
// user picks with the native dialog (window only: a page cannot name a folder on disk).

import { call, transportMode } from './api.js';
import { $, el, show, errorBlock, busyLine, withBusy, plural, formatBytes, fileToBase64, actionButton } from './dom.js';
import { problemsList, problemCount } from './compose.js';
import { saveSoon } from './draft.js';

/** Above this the total gets a warning: many servers refuse messages of 10-25 MB. */
export const LARGE_TOTAL = 10 * 1024 * 1024;

let nativeDialogs = false;
let attachments = [];
let column = null; // the attachment column as the bridge has it
let folder = null;
let listColumns = [];

export function initAttachments(info) {
  nativeDialogs = !!info.native_dialogs && transportMode() === 'window';
  const fileInput = $('#attachment-files');
  $('#attachment-files-wrap').hidden = nativeDialogs;
  $('#choose-attachment-folder').hidden = !nativeDialogs;
  $('#attachment-column-note').hidden = nativeDialogs;
  $('#attachment-column-hint').hidden = !nativeDialogs;
  if (!nativeDialogs) $('#attachment-column').setAttribute('aria-describedby', 'attachment-column-note');
  $('#attachment-column').disabled = !nativeDialogs;

  $('#add-attachments').addEventListener('click', (event) => {
    if (nativeDialogs) withBusy(event.currentTarget, chooseNative);
    else fileInput.click();
  });
  fileInput.addEventListener('change', () => {
    const files = fileInput.files ? [...fileInput.files] : [];
    if (files.length) withBusy($('#add-attachments'), () => addFiles(files)).finally(() => { fileInput.value = ''; });
  });
  $('#attachment-column').addEventListener('change', (event) => withBusy(event.currentTarget, changeColumn));
  $('#choose-attachment-folder').addEventListener('click', (event) => withBusy(event.currentTarget, chooseFolder));
  renderAttachments([]);
  refreshAttachments();
}

function status() {
  return $('#attachments-status');
}

/** Ask the bridge for the current list (on start, and after a template was loaded). */
export async function refreshAttachments() {
  const result = await call('list_attachments');
  if (result.ok && result.data) renderAttachments(result.data.attachments);
}

function listFrom(data) {
  return data && Array.isArray(data.attachments) ? data.attachments.filter((a) => a && typeof a === 'object') : null;
}

async function chooseNative() {
  show(status(), busyLine('Choose files in the dialog…'));
  const result = await call('choose_attachments');
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const list = listFrom(result.data);
  if (list === null) {
    show(status());
    return;
  }
  const before = new Set(attachments.map((a) => String(a.id)));
  const added = list.filter((a) => !before.has(String(a.id)));
  renderAttachments(list);
  show(status(), added.length ? el('p', { class: 'ok-line', text: addedWords(added) }) : null);
}

function addedWords(added) {
  if (added.length === 1) return `Attached ${added[0].filename}.`;
  return `Attached ${plural(added.length, 'file')}.`;
}

async function addFiles(files) {
  const failures = [];
  const added = [];
  for (const [i, file] of files.entries()) {
    show(status(), busyLine(files.length > 1 ? `Attaching ${file.name} (${i + 1} of ${files.length})…` : `Attaching ${file.name}…`));
    let data;
    try {
      data = await fileToBase64(file);
    } catch (err) {
      failures.push([file.name, { title: 'Could not read the file', message: String((err && err.message) || err), fix: ['Choose the file again.'] }]);
      continue;
    }
    const result = await call('add_attachment_data', { name: file.name, data_base64: data });
    if (!result.ok) {
      failures.push([file.name, result.error]);
      continue;
    }
    const list = listFrom(result.data);
    if (list) {
      const before = new Set(attachments.map((a) => String(a.id)));
      added.push(...list.filter((a) => !before.has(String(a.id))));
      renderAttachments(list);
    }
  }
  show(status(),
    added.length ? el('p', { class: 'ok-line', text: addedWords(added) }) : null,
    failures.flatMap(([name, error]) => [el('p', { class: 'fail-line', text: `${name} was not attached:` }), errorBlock(error)]));
}

async function removeAttachment(item) {
  show(status(), busyLine(`Removing ${item.filename}…`));
  const result = await call('remove_attachment', { id: item.id });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const list = listFrom(result.data);
  if (list) renderAttachments(list);
  show(status(), el('p', { class: 'hint', text: `Removed ${item.filename}.` }));
}

function renderAttachments(list) {
  attachments = Array.isArray(list) ? list.filter((a) => a && typeof a === 'object') : [];
  saveSoon(); // the draft keeps the attached files' paths
  const ul = $('#attachments-list');
  ul.replaceChildren(...attachments.map((item, index) => {
    const remove = actionButton('Remove', item.filename ?? '', { class: 'remove-attachment' });
    remove.addEventListener('click', () => withBusy(remove, () => removeAttachment(item), {
      // The row goes away: focus moves to the next file's Remove (or the one before, or Add).
      focusAfter: () => {
        const buttons = [...ul.querySelectorAll('button.remove-attachment')];
        return buttons[Math.min(index, buttons.length - 1)] || $('#add-attachments');
      },
    }));
    return el('li', {},
      el('span', { class: 'entry-name', text: item.filename ?? '' }),
      el('span', { class: 'entry-detail', text: formatBytes(item.size) }),
      remove);
  }));
  const total = attachments.reduce((sum, a) => sum + (Number(a.size) || 0), 0);
  $('#attachments-total').textContent = attachments.length
    ? `${plural(attachments.length, 'file')} for everyone, ${formatBytes(total)} in all.`
    : 'No files attached.';
  const warning = $('#attachments-warning');
  warning.textContent = total > LARGE_TOTAL
    ? `The attachments add up to ${formatBytes(total)}. Many mail servers refuse messages over 10–25 MB (files grow by about a third when sent), and large messages are often filtered as spam: consider sharing a link instead.`
    : '';
  warning.hidden = total <= LARGE_TOTAL;
}

// -- per-recipient files --------------------------------------------------------------------

/** The columns of the list now previewed: offered in "Attachment column". */
export async function setColumns(columns) {
  listColumns = Array.isArray(columns) ? columns.filter((c) => typeof c === 'string') : [];
  const select = $('#attachment-column');
  const options = [el('option', { value: '', text: '(none)' }), ...listColumns.map((c) => el('option', { value: c, text: c }))];
  select.replaceChildren(...options);
  if (!column) {
    select.value = '';
    return;
  }
  if (listColumns.includes(column)) {
    select.value = column;
    // The rows changed: check their files again.
    renderColumn(await call('set_attachment_column', { column }));
  } else {
    const gone = column;
    select.value = '';
    const result = await call('set_attachment_column', { column: null });
    renderColumn(result);
    if (result.ok) {
      show($('#attachment-column-status'), el('p', { class: 'hint', text: `Per-recipient files are off: the new list has no column “${gone}”.` }));
    }
  }
}

async function changeColumn() {
  const value = $('#attachment-column').value || null;
  show($('#attachment-column-status'), busyLine(value ? `Checking the files named in “${value}”…` : 'Turning per-recipient files off…'));
  renderColumn(await call('set_attachment_column', { column: value }));
}

async function chooseFolder() {
  const out = $('#attachment-column-status');
  show(out, busyLine('Choose a folder in the dialog…'));
  const result = await call('choose_attachment_folder');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    return;
  }
  if (!result.data) {
    show(out);
    renderFolder();
    return;
  }
  folder = result.data.folder ?? folder;
  renderFolder();
  if (column) {
    show(out, busyLine(`Checking the files named in “${column}”…`));
    renderColumn(await call('set_attachment_column', { column }));
  } else {
    show(out, el('p', { class: 'hint', text: 'Now choose the Attachment column: the list’s column that names each person’s files.' }));
  }
}

function renderFolder() {
  const line = $('#attachment-folder');
  if (folder) line.textContent = `Folder: ${folder}`;
  else if (column && nativeDialogs) line.textContent = 'No folder chosen yet: press “Choose folder...”.';
  else line.textContent = '';
}

function renderColumn(result) {
  const out = $('#attachment-column-status');
  const select = $('#attachment-column');
  if (!result.ok) {
    show(out, errorBlock(result.error));
    select.value = column && listColumns.includes(column) ? column : '';
    return;
  }
  const d = result.data || {};
  column = d.column ?? null;
  if ('folder' in d) folder = d.folder ?? null;
  select.value = column && listColumns.includes(column) ? column : '';
  renderFolder();
  const problems = Array.isArray(d.problems) ? d.problems : [];
  if (!column) {
    show(out);
  } else if (!folder) {
    show(out, el('p', { class: 'hint', text: nativeDialogs
      ? `Now choose the folder the file names in “${column}” are relative to.`
      : 'Per-recipient files need the desktop window.' }));
  } else if (problems.length) {
    const rows = new Set(problems.map((p) => p && p.line).filter((line) => line !== null && line !== undefined));
    show(out,
      el('p', { class: 'fail-line', text: `${rows.size ? plural(rows.size, 'row') : 'The column'} with file problems (${plural(problemCount(problems), 'problem')}):` }),
      problemsList(problems));
  } else {
    show(out, el('p', { class: 'ok-line', text: `Every file named in “${column}” was found.` }));
  }
}
