// A message's HTML as its recipients will see it: a desktop view and a 375 px phone view side
// by side (stacked when the window is too narrow for both), each with a Light / Dark switch.
// Both frames stay sandboxed as dom.js's messageView makes them (no scripts, no same origin);
// Dark asks the app for the preview with ?dark=1, which gives the document a dark colour scheme.

import { el } from './dom.js';

const VIEWS = [
  { key: 'desktop', name: 'Desktop', title: 'Message content, desktop view' },
  { key: 'narrow', name: 'Phone (375 px)', title: 'Message content, 375 px phone view' },
];
const DARK_META = '<meta name="color-scheme" content="dark">';
const chosen = { desktop: 'light', narrow: 'light' }; // kept while the preview is drawn again
let made = 0;

function frameFor(view, scheme, html, htmlUrl) {
  // No allow-scripts, no allow-same-origin: the message can neither run code nor reach us.
  const frame = el('iframe', { sandbox: '', class: `message-frame frame-${view.key}`, title: view.title,
    referrerpolicy: 'no-referrer', dataset: { scheme } });
  if (scheme === 'dark') frame.classList.add('frame-dark');
  // Served by the app with its own policy (inline styles, embedded images; never scripts or
  // remote content); srcdoc would inherit this page's policy and lose every style.
  if (typeof htmlUrl === 'string' && htmlUrl.startsWith('/preview/')) frame.src = scheme === 'dark' ? `${htmlUrl}?dark=1` : htmlUrl;
  else frame.srcdoc = scheme === 'dark' ? DARK_META + html : html;
  return frame;
}

function pane(view, html, htmlUrl, id) {
  const box = el('figure', { class: `preview-pane preview-${view.key}`, dataset: { view: view.key } });
  let frame = frameFor(view, chosen[view.key], html, htmlUrl);
  const name = `${id}-${view.key}-scheme`;
  const radios = ['light', 'dark'].map((scheme) => {
    const input = el('input', { type: 'radio', name, id: `${name}-${scheme}`, value: scheme, checked: chosen[view.key] === scheme,
      onchange: () => {
        chosen[view.key] = scheme;
        const next = frameFor(view, scheme, html, htmlUrl);
        frame.replaceWith(next);
        frame = next;
        box.dataset.scheme = scheme;
      } });
    return el('span', { class: 'scheme-choice' }, input, el('label', { for: input.id, text: scheme === 'light' ? 'Light' : 'Dark' }));
  });
  box.dataset.scheme = chosen[view.key];
  box.append(el('figcaption', { class: 'preview-bar' },
    el('fieldset', { class: 'scheme-switch' }, el('legend', { text: view.name }), radios)), frame);
  return box;
}

/** The two views of a message's HTML (htmlUrl: the app's /preview/ address, else srcdoc). */
export function previewViews(html, htmlUrl) {
  made += 1;
  const id = `pv${made}`;
  return el('div', { class: 'preview-views' }, VIEWS.map((view) => pane(view, html, htmlUrl, id)));
}
