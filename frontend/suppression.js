// The suppression list (in Recipients): addresses never to mail, kept across runs. Shows the
// count and the first entries, adds pasted addresses, removes one at a time; after a change the
// recipients preview is read again so its counts match.

import { call } from './api.js';
import { onViewChange } from './steps.js';
import { $, el, show, errorBlock, busyLine, withBusy, plural, actionButton } from './dom.js';

const MAX_SHOWN = 100;

let onChanged = async () => {};
let loaded = false;

export function initSuppression({ onChange }) {
  onChanged = onChange;
  onViewChange((view) => {
    if (view === 'suppression' && !loaded) refreshSuppression();
  });
  $('#suppression-add').addEventListener('click', (event) => withBusy(event.currentTarget, addAddresses));
}

function status() {
  return $('#suppression-status');
}

const count = (value) => (Array.isArray(value) ? value.length : Number(value) || 0);

export async function refreshSuppression() {
  const result = await call('suppression_list');
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  loaded = true;
  render(result.data || {});
}

function render(d) {
  const entries = Array.isArray(d.entries) ? d.entries.filter((e) => e && typeof e === 'object') : [];
  const total = Math.max(Number(d.count) || 0, entries.length);
  $('#suppression-count').textContent = total
    ? `${plural(total, 'address', 'addresses')} never to be mailed.`
    : 'The list is empty: every valid address in a list is mailed.';
  const ul = $('#suppression-entries');
  const shown = entries.slice(0, MAX_SHOWN);
  ul.replaceChildren(...shown.map((entry, index) => {
    const remove = actionButton('Remove', entry.email ?? '', { class: 'remove-suppressed' });
    remove.addEventListener('click', () => withBusy(remove, () => removeAddress(entry.email), {
      focusAfter: () => {
        const buttons = [...ul.querySelectorAll('button.remove-suppressed')];
        return buttons[Math.min(index, buttons.length - 1)] || $('#suppression-text');
      },
    }));
    return el('li', {},
      el('span', { class: 'entry-name value', text: entry.email ?? '' }),
      entry.reason ? el('span', { class: 'entry-detail', text: entry.reason }) : null,
      remove);
  }));
  if (total > shown.length) ul.append(el('li', { class: 'hint', text: `…and ${total - shown.length} more` }));
}

async function addAddresses() {
  const textarea = $('#suppression-text');
  const text = textarea.value;
  if (!text.trim()) {
    show(status(), el('p', { class: 'fail-line', text: 'Enter the addresses never to mail first.' }));
    textarea.focus();
    return;
  }
  show(status(), busyLine('Adding to the suppression list…'));
  const result = await call('suppression_add', { text, reason: 'added by hand' });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  const d = result.data || {};
  const added = count(d.added);
  const already = count(d.already);
  const invalid = Array.isArray(d.invalid) ? d.invalid.filter((x) => x && typeof x === 'object') : [];
  let words = `Added ${plural(added, 'address', 'addresses')}.`;
  if (already) words += ` ${already} ${already === 1 ? 'was' : 'were'} already on the list.`;
  const parts = [el('p', { class: added ? 'ok-line' : 'hint', text: words })];
  if (invalid.length) {
    parts.push(el('p', { class: 'fail-line', text: `${plural(invalid.length, 'entry is', 'entries are')} not an address and ${invalid.length === 1 ? 'was' : 'were'} not added:` }),
      el('ul', { class: 'issue-list' }, invalid.slice(0, 200).map((x) => el('li', {},
        x.line !== null && x.line !== undefined ? el('span', { class: 'line-ref', text: `Line ${x.line}: ` }) : null,
        el('span', { class: 'value', text: x.value ? `“${x.value}”` : '(empty)' }),
        x.reason ? [' — ', el('span', { class: 'reason', text: x.reason })] : null))));
    // Keep what was not added, so it can be corrected and added again.
    textarea.value = invalid.map((x) => x.value ?? '').filter(Boolean).join('\n');
  } else {
    textarea.value = '';
  }
  show(status(), parts);
  await refreshSuppression();
  await onChanged();
}

async function removeAddress(email) {
  show(status(), busyLine(`Removing ${email}…`));
  const result = await call('suppression_remove', { email });
  if (!result.ok) {
    show(status(), errorBlock(result.error));
    return;
  }
  show(status(), el('p', { class: 'hint', text: `Removed ${email}: it will be mailed again when it is on a list.` }));
  await refreshSuppression();
  await onChanged();
}
