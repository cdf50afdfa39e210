// Templates (in Compose): named messages saved in the user's data folder. Load, Save as...,
// Rename, Delete (asked inline), Export... and Import... (the native dialogs in the window, a
// download and the "Template file" field in a browser).

import { call, transportMode } from './api.js';
import { onViewChange } from './steps.js';
import { $, el, show, errorBlock, busyLine, withBusy, plural, fileToBase64, downloadText, confirmBox } from './dom.js';

let deps = null;
let nativeDialogs = false;
let templates = [];
let loaded = false;
let mode = 'save'; // what the Template name row does: 'save' (Save as...) or 'rename'
let lastName = ''; // the template last loaded or saved, offered by Save as...

const quoted = (name) => `“${name}”`;

/** The name the bridge gave back ({name} or {template: {name}}), else the fallback. */
function nameIn(data, fallback) {
  const d = data || {};
  const name = (d.template && d.template.name) || d.name;
  return typeof name === 'string' && name ? name : fallback;
}

export function initTemplates(info, dependencies) {
  deps = dependencies;
  nativeDialogs = !!info.native_dialogs && transportMode() === 'window';
  $('#template-file-wrap').hidden = nativeDialogs;
  onViewChange((view) => {
    if (view === 'templates' && !loaded) refreshTemplates();
  });
  const on = (id, action, options) => $(id).addEventListener('click', (event) => {
    withBusy(event.currentTarget, action, options).finally(updateButtons);
  });
  on('#template-load', loadTemplate);
  on('#template-save-as', async () => openNameRow('save'));
  on('#template-rename', renameTemplate);
  on('#template-delete', async () => askDelete());
  on('#template-export', exportTemplate);
  on('#template-save', () => saveTemplate(false), { focusAfter: () => $('#saved-templates') });
  $('#template-name-close').addEventListener('click', () => closeNameRow({ focus: true }));
  $('#template-import').addEventListener('click', (event) => {
    if (nativeDialogs) withBusy(event.currentTarget, importNative).finally(updateButtons);
    else $('#template-file').click();
  });
  const fileInput = $('#template-file');
  fileInput.addEventListener('change', () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) withBusy($('#template-import'), () => importFile(file)).finally(() => { fileInput.value = ''; updateButtons(); });
  });
  $('#saved-templates').addEventListener('change', () => {
    updateButtons();
    renderInfo();
  });
  $('#template-name').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      const button = mode === 'rename' ? $('#template-rename') : $('#template-save');
      if (button.disabled) return;
      // Focus goes to the button first, so that when the row closes it lands somewhere useful.
      button.focus();
      button.click();
    } else if (event.key === 'Escape') {
      event.preventDefault();
      closeNameRow({ focus: true });
    }
  });
  updateButtons();
}

function status() {
  return $('#templates-status');
}

function selected() {
  return $('#saved-templates').value;
}

function updateButtons() {
  const none = !selected();
  for (const id of ['#template-load', '#template-rename', '#template-delete', '#template-export']) {
    const button = $(id);
    if (button.getAttribute('aria-busy') !== 'true') button.disabled = none;
  }
}

function renderInfo() {
  const t = templates.find((x) => x.name === selected());
  const parts = [];
  if (t) {
    if (t.subject) parts.push(`Subject: ${t.subject}`);
    parts.push(t.format === 'text' ? 'plain text' : 'HTML');
    if (t.updated) {
      const when = Date.parse(t.updated);
      parts.push(`saved ${Number.isFinite(when) ? new Date(when).toLocaleString() : t.updated}`);
    }
  }
  $('#template-info').textContent = parts.join(' · ');
}

/** Read the list from the bridge; select `select` (a name) when given, else keep the selection. */
export async function refreshTemplates({ select = null } = {}) {
  const result = await call('template_list');
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  loaded = true;
  const list = result.data && Array.isArray(result.data.templates) ? result.data.templates : [];
  templates = list.filter((t) => t && typeof t.name === 'string');
  const box = $('#saved-templates');
  const keep = select ?? box.value;
  if (templates.length) {
    box.replaceChildren(...templates.map((t) => el('option', { value: t.name, text: t.name })));
    const match = templates.find((t) => t.name === keep)
      || templates.find((t) => t.name.toLowerCase() === String(keep).toLowerCase());
    box.value = match ? match.name : templates[0].name;
  } else {
    box.replaceChildren(el('option', { value: '', text: 'No saved templates' }));
    box.value = '';
  }
  $('#templates-count').textContent = templates.length ? `${plural(templates.length, 'template')} saved.` : 'No saved templates yet: write a message in Message, then Save as... here.';
  updateButtons();
  renderInfo();
}

function needSelection() {
  if (selected()) return false;
  show(status(), el('p', { class: 'hint', text: 'There is no saved template yet: write a message, then “Save as...”.' }));
  return true;
}

async function loadTemplate() {
  if (needSelection()) return;
  const name = selected();
  show(status(), busyLine(`Loading ${quoted(name)}…`));
  const result = await call('template_load', { name });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  deps.setMessage(d.message || {});
  lastName = name;
  await deps.onLoaded();
  const missing = Array.isArray(d.attachments) ? d.attachments.filter((a) => typeof a === 'string') : [];
  show(status(), el('p', { class: 'ok-line' }, `Loaded ${quoted(name)}. `,
    el('button', { type: 'button', class: 'link-button', 'data-go': 'message', text: 'Go to Message' })),
    missing.length ? [
      el('p', { class: 'fail-line', text: `${plural(missing.length, 'attachment')} of this template ${missing.length === 1 ? 'was' : 'were'} not found and ${missing.length === 1 ? 'is' : 'are'} not attached:` }),
      el('ul', { class: 'issue-list' }, missing.map((f) => el('li', { class: 'value', text: f }))),
      el('p', { class: 'hint', text: 'Add them again with “Add attachments...”, then save the template.' }),
    ] : null);
}

function openNameRow(next) {
  mode = next;
  const row = $('#template-name-row');
  const input = $('#template-name');
  const hint = $('#template-name-hint');
  hint.classList.remove('warn');
  show(status());
  row.hidden = false;
  $('#template-save').hidden = next !== 'save';
  if (next === 'save') {
    input.value = lastName || selected() || '';
    hint.textContent = 'Saves the subject, message, format, unsubscribe link and attachment list under this name.';
  } else {
    input.value = selected();
    hint.textContent = `Type the new name for ${quoted(selected())}, then press Rename (or Enter).`;
  }
  input.focus();
  input.select();
}

function closeNameRow({ focus = false } = {}) {
  const row = $('#template-name-row');
  if (row.hidden) return;
  const hadFocus = row.contains(document.activeElement);
  row.hidden = true;
  if (focus || hadFocus) (mode === 'rename' ? $('#template-rename') : $('#template-save-as')).focus();
}

function nameFromInput() {
  const input = $('#template-name');
  const name = input.value.trim();
  if (!name) {
    const hint = $('#template-name-hint');
    hint.textContent = 'Enter a name for the template.';
    hint.classList.add('warn');
    input.focus();
  }
  return name;
}

const isDuplicate = (error) => !!error && (error.category === 'template_exists' || /already exists/i.test(String(error.message || '')));

async function saveTemplate(overwrite) {
  const name = nameFromInput();
  if (!name) return;
  show(status(), busyLine(`Saving ${quoted(name)}…`));
  const result = await call('template_save', { name, message: deps.getMessage(), overwrite });
  if (!result.ok) {
    if (!overwrite && isDuplicate(result.error)) {
      askReplace(name);
      return;
    }
    show(status(), errorBlock(result.error));
    return;
  }
  const saved = nameIn(result.data, name);
  lastName = saved;
  closeNameRow();
  await refreshTemplates({ select: saved });
  show(status(), el('p', { class: 'ok-line', text: `Saved ${quoted(saved)}.` }));
}

/** A template with this name exists: ask inline before replacing it. */
function askReplace(name) {
  const replace = el('button', { type: 'button', id: 'template-replace', text: 'Replace' });
  const keep = el('button', { type: 'button', id: 'template-keep', text: 'Keep the saved one' });
  const keepIt = () => {
    show(status(), el('p', { class: 'hint', text: 'Not saved: choose another name.' }));
    $('#template-name').focus();
    $('#template-name').select();
  };
  replace.addEventListener('click', () => withBusy(replace, () => saveTemplate(true), { focusAfter: () => $('#saved-templates') }));
  keep.addEventListener('click', keepIt);
  const box = confirmBox({
    id: 'template-replace-confirm',
    question: `A template named ${quoted(name)} already exists. Replace it?`,
    hint: 'Replace overwrites it with the message as it is now.',
    buttons: [replace, keep],
    onEscape: keepIt,
  });
  show(status(), box);
  // The safe choice has focus: Enter twice does not overwrite a template.
  keep.focus();
}

async function renameTemplate() {
  if (needSelection()) return;
  const old = selected();
  const row = $('#template-name-row');
  const wanted = $('#template-name').value.trim();
  if (row.hidden || !wanted || wanted === old) {
    if (!row.hidden && mode === 'rename' && (!wanted || wanted === old)) {
      const hint = $('#template-name-hint');
      hint.textContent = wanted ? 'Type a different name first.' : 'Enter the new name first.';
      hint.classList.add('warn');
      $('#template-name').focus();
      return;
    }
    openNameRow('rename');
    return;
  }
  show(status(), busyLine(`Renaming ${quoted(old)}…`));
  const result = await call('template_rename', { old, new: wanted });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const renamed = nameIn(result.data, wanted);
  if (lastName === old) lastName = renamed;
  closeNameRow();
  await refreshTemplates({ select: renamed });
  show(status(), el('p', { class: 'ok-line', text: `Renamed ${quoted(old)} to ${quoted(renamed)}.` }));
}

function askDelete() {
  if (needSelection()) return;
  const name = selected();
  const yes = el('button', { type: 'button', id: 'template-delete-yes', text: 'Delete template' });
  const keep = el('button', { type: 'button', id: 'template-delete-keep', text: 'Keep template' });
  const keepIt = () => {
    show(status());
    $('#template-delete').focus();
  };
  yes.addEventListener('click', () => withBusy(yes, () => deleteTemplate(name), { focusAfter: () => $('#saved-templates') }).finally(updateButtons));
  keep.addEventListener('click', keepIt);
  const box = confirmBox({
    id: 'template-delete-confirm',
    question: `Delete the template ${quoted(name)}? This cannot be undone.`,
    buttons: [yes, keep],
    onEscape: keepIt,
  });
  show(status(), box);
  keep.focus();
}

async function deleteTemplate(name) {
  show(status(), busyLine(`Deleting ${quoted(name)}…`));
  const result = await call('template_delete', { name });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  if (lastName === name) lastName = '';
  await refreshTemplates();
  show(status(), el('p', { class: 'ok-line', text: `Deleted ${quoted(name)}.` }));
}

async function exportTemplate() {
  if (needSelection()) return;
  const name = selected();
  show(status(), busyLine(`Exporting ${quoted(name)}…`));
  const result = await call('template_export', { name });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const d = result.data;
  if (!d) {
    show(status());
  } else if (typeof d.json === 'string') {
    const filename = d.filename || 'template.json';
    downloadText(filename, d.json, 'application/json');
    show(status(), el('p', { class: 'ok-line', text: `Downloaded ${filename}.` }));
  } else if (d.path) {
    show(status(), el('p', { class: 'ok-line', text: `Saved to ${d.path}` }));
  } else {
    show(status());
  }
}

async function imported(result, retry = null) {
  if (!result.ok) {
    if (retry && isDuplicate(result.error)) {
      askReplaceImported(result.error, retry);
      return;
    }
    show(status(), errorBlock(result.error));
    return;
  }
  if (!result.data) {
    show(status());
    return;
  }
  const name = nameIn(result.data, null);
  await refreshTemplates({ select: name });
  show(status(), el('p', { class: 'ok-line', text: name ? `Imported ${quoted(name)}. Press Load to use it.` : 'Imported.' }));
}

/** "a template named 'x' already exists; choose ..." -> "A template named 'x' already exists." */
function sentence(message) {
  const first = String(message || '').replace(/;.*$/s, '').trim().replace(/\.$/, '');
  return first ? `${first.charAt(0).toUpperCase()}${first.slice(1)}.` : '';
}

/** The imported file's template has the name of a saved one: replace it, or keep the saved one. */
function askReplaceImported(error, retry) {
  const replace = el('button', { type: 'button', id: 'template-import-replace', text: 'Replace' });
  const keep = el('button', { type: 'button', id: 'template-import-keep', text: 'Keep the saved one' });
  const keepIt = () => {
    show(status(), el('p', { class: 'hint', text: 'Not imported. Rename the saved template first to keep both.' }));
    $('#template-import').focus();
  };
  replace.addEventListener('click', () => withBusy(replace, async () => imported(await retry()), { focusAfter: () => $('#saved-templates') }).finally(updateButtons));
  keep.addEventListener('click', keepIt);
  const box = confirmBox({
    id: 'template-import-confirm',
    question: `${sentence(error.message) || 'A template with this name already exists.'} Replace it with the imported one?`,
    buttons: [replace, keep],
    onEscape: keepIt,
  });
  show(status(), box);
  keep.focus();
}

async function importNative() {
  show(status(), busyLine('Choose a template file in the dialog…'));
  await imported(await call('template_import'));
}

async function importFile(file) {
  show(status(), busyLine(`Reading ${file.name}…`));
  let data;
  try {
    data = await fileToBase64(file);
  } catch (err) {
    show(status(), errorBlock({ title: 'Could not read the file', message: String((err && err.message) || err), fix: ['Choose the file again.'] }));
    return;
  }
  const send = (overwrite) => call('template_import_data', { name: file.name, data_base64: data, overwrite });
  await imported(await send(false), () => send(true));
}
