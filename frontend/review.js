// Review & send: what the core's review says (see backend/review.py): what is missing, how many
// messages go where and from whom, the limits and the time they take, every warning with its
// one-click fix, and the first recipient's message.

import { call } from './api.js';
import { $, el, show, plural, messageView } from './dom.js';
import { problemsList, problemCount } from './compose.js';
import { saveSoon } from './draft.js';
import { previewViews } from './preview.js';

const STEP_WORDS = { account: 'Account', recipients: 'Recipients', message: 'Message' };

let deps = null;
const skipped = new Set(); // fields whose empty rows the user chose to skip

/** deps: getMessage(), setMessage(m), previewParams() -> the preview's parameters. */
export function initReview(dependencies) {
  deps = dependencies;
}

/** The fields whose empty rows are left out (sent with Send as skip_empty). */
export function skippedFields() {
  return [...skipped];
}

/** {{ name }} -> {{ name | default("there") }} in the subject and the body, where it is bare. */
function useDefault(field, example) {
  const bare = new RegExp(`\\{\\{-?\\s*${field.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*-?\\}\\}`, 'g');
  const m = deps.getMessage();
  deps.setMessage({ ...m, subject: m.subject.replace(bare, example), body: m.body.replace(bare, example) });
  skipped.delete(field);
  saveSoon(); // the draft keeps the fix
}

function warningItem(w, refresh) {
  const words = el('p', { text: w.text });
  const fix = w.fix || null;
  if (!fix || w.kind !== 'empty_field') return el('div', { class: 'warning warning-item', dataset: { kind: w.kind } }, words);
  const field = String(fix.field);
  const isSkipped = Boolean(fix.skipped);
  const buttons = isSkipped
    ? [el('button', { type: 'button', text: 'Send to them too', onclick: () => { skipped.delete(field); refresh(); } })]
    : [el('button', { type: 'button', text: `Use a default: ${fix.default}`, onclick: () => { useDefault(field, fix.default); refresh(); } }),
      el('button', { type: 'button', text: `Skip them`, onclick: () => { skipped.add(field); refresh(); } })];
  return el('div', { class: 'warning warning-item', dataset: { kind: w.kind, field } }, words, ...buttons);
}

/** Draw the review; refresh() asks the core again (after a fix). */
export function renderReview(r, refresh) {
  const box = $('#review');
  const parts = [];
  const missing = Array.isArray(r.missing) ? r.missing : [];
  const problems = Array.isArray(r.problems) ? r.problems : [];
  if (missing.length || problems.length) {
    parts.push(el('h3', { text: 'Before you can send' }));
    parts.push(el('ul', { class: 'checklist', id: 'review-checklist' }, missing.map((m) => el('li', {},
      el('span', { text: m.text }),
      STEP_WORDS[m.step] ? el('button', { type: 'button', class: 'link-button', 'data-go': m.step, text: `Go to ${STEP_WORDS[m.step]}` }) : null)),
    problems.length ? el('li', {}, el('span', { text: `${plural(problemCount(problems), 'problem')} in the message for some rows (listed below)` }),
      el('button', { type: 'button', class: 'link-button', 'data-go': 'message', text: 'Go to Message' })) : null));
    if (problems.length) parts.push(problemsList(problems));
  } else {
    parts.push(el('p', { class: 'ready-line', id: 'review-ready', text: 'Ready to send.' }));
  }
  const n = Number(r.messages) || 0;
  const rows = [['Messages', n ? n.toLocaleString() : '—'], ['Through', r.through || '—'], ['From', r.sender || '—'],
    ['Sending limits', r.limits || 'none'],
    ['Last 24 hours', meterWords(r.meter)],
    ['Estimated time', r.estimate ? `${r.estimate} at these limits and delay` : '—']];
  if (r.verdict) rows.push(['Content check', `${r.verdict} (score ${Number(r.score) || 0}), read offline as spam filters would`]);
  parts.push(el('dl', { class: 'review-summary', id: 'review-summary' }, rows.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })])));
  const warnings = Array.isArray(r.warnings) ? r.warnings : [];
  if (warnings.length) {
    parts.push(el('h3', { text: `Worth a look (${warnings.length})` }));
    parts.push(el('div', { id: 'review-warnings' }, warnings.map((w) => warningItem(w, refresh))));
  }
  const tips = (Array.isArray(r.findings) ? r.findings : []).filter((f) => Number(f.score) < 1);
  if (tips.length) {
    parts.push(el('details', { class: 'panel', id: 'review-tips' }, el('summary', { text: `Tips (${tips.length})` }),
      el('ul', { class: 'notes-list' }, tips.map((f) => el('li', { text: `${f.reason} ${f.fix || ''}`.trim() })))));
  }
  show(box, parts);
  if (n) renderPreview($('#review-preview'));
  else show($('#review-preview'));
}

async function renderPreview(box) {
  const params = deps.previewParams();
  const result = await call('preview_message', { ...params, index: 1 });
  if (!result.ok || !result.data) return;
  const d = result.data;
  const isText = deps.getMessage().format === 'text';
  show(box, el('details', { class: 'panel', open: true },
    el('summary', { text: `Preview of the first message: ${d.to}` }),
    messageView({ headers: [['From', d.from], ['To', d.to], ['Subject', d.subject]], html: isText ? null : d.html, htmlUrl: d.html_url, text: d.text, frames: previewViews })));
}

/** The account's last 24 hours against its daily limit (the core's meter). */
export function meterWords(meter, sentNow = 0) {
  if (!meter || !Number.isFinite(meter.sent)) return '—';
  if (meter.account === false) return 'not counted: nothing leaves this computer';
  const sent = (meter.sent + sentNow).toLocaleString();
  return meter.per_day ? `${sent} sent by this account, of ${Number(meter.per_day).toLocaleString()} a day` : `${sent} sent by this account`;
}
