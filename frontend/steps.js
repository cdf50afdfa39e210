// The navigation: the four steps of a campaign (Account, Recipients, Message, Review & send)
// and the other views (History, Local test inbox, Templates, Suppression list). One view shows
// at a time; each step's state and one-line summary come from the core's review.

import { call } from './api.js';
import { $, $$ } from './dom.js';

export const STEPS = ['account', 'recipients', 'message', 'review'];
const STATE_WORDS = { done: 'Done. ', attention: 'Needs attention. ', todo: 'Not started. ' };
const REFRESH_MS = 700;

let deps = null;
let current = 'account';
let timer = null;
let asked = 0; // the newest review asked for: older answers arriving late are dropped
let last = null;
const listeners = [];

/** deps: request() -> the review's parameters (account, message, options), or null. */
export function initSteps(dependencies) {
  deps = dependencies;
  document.addEventListener('click', (event) => {
    const target = event.target instanceof Element ? event.target.closest('[data-go]') : null;
    if (target && !target.disabled) go(target.dataset.go);
  });
  document.addEventListener('keydown', (event) => {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const at = STEPS.indexOf(current);
    let next = null;
    if (event.key === 'ArrowRight') next = STEPS[Math.min(STEPS.length - 1, at < 0 ? 0 : at + 1)];
    else if (event.key === 'ArrowLeft') next = STEPS[Math.max(0, at < 0 ? 0 : at - 1)];
    else if (/^[1-4]$/.test(event.key)) next = STEPS[Number(event.key) - 1];
    if (next) {
      event.preventDefault();
      go(next);
    }
  });
  // Anything typed may change a step's state: ask the core again, a moment after typing stops.
  $('#content').addEventListener('input', () => refreshSteps());
  $('#content').addEventListener('change', () => refreshSteps());
  // ... and so may what a button did: a connection test passed, a list was imported, a sign-in.
  const observer = new MutationObserver(() => refreshSteps());
  for (const region of $$('#connection-result, #google-status, #microsoft-status, #recipients-summary, #suppression-status, #templates-status')) {
    observer.observe(region, { childList: true, subtree: true, characterData: true });
  }
}

/** Show one view (a step or another view), move focus to its heading. */
export function go(view, { focus = true } = {}) {
  const section = document.querySelector(`section.view[data-view="${view}"]`);
  if (!section) return;
  for (const s of $$('section.view')) s.hidden = s !== section;
  for (const b of $$('.nav-button')) {
    if (b.dataset.go === view) b.setAttribute('aria-current', STEPS.includes(view) ? 'step' : 'page');
    else b.removeAttribute('aria-current');
  }
  current = view;
  document.body.dataset.view = view;
  window.scrollTo(0, 0);
  if (focus) {
    const heading = section.querySelector('h2');
    if (heading) heading.focus({ preventScroll: true });
  }
  for (const fn of listeners) fn(view);
  refreshSteps({ now: true });
}

export function currentView() {
  return current;
}

/** Call fn(view) each time the view changes. */
export function onViewChange(fn) {
  listeners.push(fn);
}

/** The last review the core gave (null before the first). */
export function lastReview() {
  return last;
}

/** Ask the core for the review again (debounced unless now); resolves to it. */
export function refreshSteps({ now = false } = {}) {
  clearTimeout(timer);
  if (now) return askReview();
  return new Promise((resolve) => {
    timer = setTimeout(() => resolve(askReview()), REFRESH_MS);
  });
}

async function askReview() {
  const params = deps && deps.request();
  if (!params) return null;
  const mine = ++asked;
  const result = await call('check_message', params);
  if (mine !== asked) return last;
  if (!result.ok || !result.data) {
    // A value the page cannot send as it is (a port of 70000...): said in the checklist.
    const e = result.error || {};
    const field = String(e.field || '');
    const step = field.startsWith('message') ? 'message' : field.startsWith('account') ? 'account' : 'review';
    last = { steps: {}, missing: [{ step, text: e.message || 'The check did not answer. Try again.' }], warnings: [],
      problems: [], ready: false, sendable: false };
  } else {
    last = result.data;
  }
  renderSteps(last.steps || {});
  if (deps.onReview) deps.onReview(last);
  return last;
}

function renderSteps(steps) {
  for (const key of STEPS) {
    const s = steps[key];
    const item = document.querySelector(`.nav-step[data-step="${key}"]`);
    if (!s || !item) continue;
    item.dataset.state = s.state;
    item.querySelector('.step-state-words').textContent = STATE_WORDS[s.state] || '';
    item.querySelector('.step-summary-text').textContent = s.summary || '';
  }
}
