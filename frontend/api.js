// The only module that knows the transport. In the pywebview window, calls go to
// window.pywebview.api and Python dispatches events on window. In browser mode (the page was
// opened with #token=... by `bulk-mailer --web`), calls are POST /api/<method> and events
// arrive over Server-Sent Events, re-dispatched on window so the UI is identical in both.

const TOKEN_KEY = 'bulk-mailer-token';
const EVENT_TYPES = new Set(['email-progress', 'campaign-state', 'campaign-wait', 'track-change', 'sent-copy',
  'sent-copy-warning']);

const DISCONNECTED = Object.freeze({
  category: 'server_disconnected',
  title: 'App not reachable',
  message: 'Bulk Mailer did not answer: it may have been closed, or it stopped working.',
  cause: '',
  fix: ['Restart Bulk Mailer'],
});

let mode = null; // 'http' | 'window'
let token = null;
let readyPromise = null;
let eventSource = null;
let connected = null;
let launchCode = null; // single-use code from the launch page the app opened the browser on

function detectMode() {
  const hash = location.hash.startsWith('#') ? location.hash.slice(1) : location.hash;
  const code = hash.includes('code=') ? new URLSearchParams(hash).get('code') : null;
  if (code) {
    // The browser was sent here by the app's private launch page: a one-time code (it works
    // once, within 30 seconds) that is swapped for the real token below.
    launchCode = code;
    history.replaceState(history.state, '', location.pathname + location.search);
    mode = 'http';
    return;
  }
  const fromHash = hash.includes('token=') ? new URLSearchParams(hash).get('token') : null;
  if (fromHash) {
    token = fromHash;
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch {
      /* storage disabled: the token lives in memory for this page only */
    }
    // Keep the token out of the visible address, history and bookmarks.
    history.replaceState(history.state, '', location.pathname + location.search);
    mode = 'http';
    return;
  }
  let saved = null;
  try {
    saved = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    saved = null;
  }
  if (saved && !window.pywebview) {
    token = saved;
    mode = 'http';
    return;
  }
  mode = 'window';
}

detectMode();

/** 'http' (browser mode) or 'window' (pywebview). */
export function transportMode() {
  return mode;
}

function windowApiReady() {
  const api = window.pywebview && window.pywebview.api;
  return !!api && typeof api.app_info === 'function';
}

/** A promise resolved when the API is usable. */
export function ready() {
  if (readyPromise) return readyPromise;
  if (mode === 'http' && launchCode) {
    readyPromise = fetch('/session', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code: launchCode }),
    })
      .then((r) => (r.ok ? r.json() : {}))
      .then((data) => {
        launchCode = null;
        if (data && data.token) {
          token = data.token;
          try {
            sessionStorage.setItem(TOKEN_KEY, token);
          } catch {
            /* memory only */
          }
        }
        startEvents();
      })
      .catch(() => startEvents());
  } else if (mode === 'http') {
    startEvents();
    readyPromise = Promise.resolve();
  } else {
    readyPromise = new Promise((resolve) => {
      if (windowApiReady()) {
        resolve();
        return;
      }
      const done = () => {
        window.removeEventListener('pywebviewready', done);
        clearInterval(timer);
        resolve();
      };
      window.addEventListener('pywebviewready', done);
      // Belt and braces: the event may have fired before this module ran.
      const timer = setInterval(() => {
        if (windowApiReady()) done();
      }, 250);
    });
  }
  return readyPromise;
}

function failure(error) {
  return { ok: false, error: { ...error, fix: [...(error.fix || [])] } };
}

function normalise(reply) {
  let value = reply;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      /* a plain string answer: wrap it below */
    }
  }
  if (value && typeof value === 'object' && typeof value.ok === 'boolean') {
    if (!value.ok && (!value.error || typeof value.error !== 'object')) {
      return failure({ category: 'internal', title: 'Something went wrong', message: String(value.error ?? ''), cause: '', fix: [] });
    }
    return value;
  }
  return failure({
    category: 'internal',
    title: 'Unexpected answer',
    message: 'The app gave an answer the window does not understand.',
    cause: '',
    fix: ['Restart Bulk Mailer'],
  });
}

async function windowCall(method, params) {
  const api = window.pywebview && window.pywebview.api;
  if (!api || typeof api[method] !== 'function') {
    return failure({
      category: 'internal',
      title: 'Not available',
      message: `This version of the app has no "${method}" function.`,
      cause: '',
      fix: ['Restart Bulk Mailer'],
    });
  }
  try {
    const reply = params === undefined ? await api[method]() : await api[method](params);
    return normalise(reply);
  } catch (err) {
    return failure({
      category: 'internal',
      title: 'Something went wrong',
      message: String((err && err.message) || err || 'The call failed.'),
      cause: '',
      fix: ['Restart Bulk Mailer'],
    });
  }
}

async function httpCall(method, params) {
  let response;
  try {
    response = await fetch('/api/' + encodeURIComponent(method), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Token': token },
      body: JSON.stringify(params ?? {}),
      cache: 'no-store',
      credentials: 'same-origin',
    });
  } catch {
    return failure(DISCONNECTED);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (body && typeof body === 'object' && typeof body.ok === 'boolean') return normalise(body);
  if (response.status === 401 || response.status === 403) {
    return failure({
      category: 'server_disconnected',
      title: 'Access refused',
      message: 'This page is not allowed to talk to Bulk Mailer: its access token is missing or out of date.',
      cause: 'Each run of Bulk Mailer prints a new address with a new token.',
      fix: ['Open the address that `bulk-mailer --web` printed (it ends with #token=...)'],
    });
  }
  return failure({ ...DISCONNECTED, message: `Bulk Mailer answered ${response.status} ${response.statusText}`.trim() + '.' });
}

/** Call a bridge method; resolves to {ok, data} or {ok:false, error}. Never rejects. */
export async function call(method, params) {
  await ready();
  return mode === 'http' ? httpCall(method, params) : windowCall(method, params);
}

/** Listen for 'email-progress' / 'campaign-state' events; handler(detail). Returns an unsubscribe function. */
export function onEvent(type, handler) {
  const listener = (event) => {
    let detail = event.detail;
    if (typeof detail === 'string') {
      try {
        detail = JSON.parse(detail);
      } catch {
        return;
      }
    }
    if (detail && typeof detail === 'object') handler(detail);
  };
  window.addEventListener(type, listener);
  return () => window.removeEventListener(type, listener);
}

/** Browser mode only: handler(connected: boolean) when the event stream drops or comes back. */
export function onConnectionChange(handler) {
  const listener = (event) => handler(event.detail);
  window.addEventListener('bulk-mailer-connection', listener);
  return () => window.removeEventListener('bulk-mailer-connection', listener);
}

function setConnected(value) {
  if (connected === value) return;
  connected = value;
  window.dispatchEvent(new CustomEvent('bulk-mailer-connection', { detail: value }));
}

function startEvents() {
  if (eventSource) return;
  eventSource = new EventSource('/api/events?token=' + encodeURIComponent(token));
  eventSource.onopen = () => setConnected(true);
  eventSource.onerror = () => setConnected(false);
  eventSource.onmessage = (message) => {
    let payloads;
    try {
      payloads = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!Array.isArray(payloads)) payloads = [payloads];
    for (const payload of payloads) {
      if (payload && typeof payload === 'object' && EVENT_TYPES.has(payload.type)) {
        window.dispatchEvent(new CustomEvent(payload.type, { detail: payload }));
      }
    }
  };
}
