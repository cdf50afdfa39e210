// Entry point: wait for the API, load app info and settings, wire the sections together.

import { call, onEvent, ready, transportMode, onConnectionChange } from './api.js';
import { $, el, show, errorBlock } from './dom.js';
import * as account from './account.js';
import { initDraft, saveSoon } from './draft.js';
import { initRecipients, templateFields, refreshPreview, recipientCount, showList, clearList } from './recipients.js';
import { initCompose, getMessage, setMessage, setFields, setRecipientTotal } from './compose.js';
import { initAttachments, refreshAttachments, setColumns as setAttachmentColumns } from './attachments.js';
import { initSuppression } from './suppression.js';
import { initTemplates } from './templates.js';
import { initSend, handleProgress, handleState, handleWait, syncState, getDelay, getConnections, setConnections, expectRun, runStarted, isBusy, sendOptions, setReady, setScheduled, notSending } from './send.js';
import { initSchedule, getSchedule, renderWhen, draftValues, restoreDraft, resetSchedule, zoneList } from './schedule.js';
import { initSteps, go, refreshSteps, currentView } from './steps.js';
import { initReview, renderReview, skippedFields } from './review.js';
import { initChecks, clearStaleChecks } from './checks.js';
import { initHistory, refreshHistory } from './history.js';
import { initLog, currentCampaign, queueProgress } from './log.js';
import { initInbox, refreshInbox } from './inbox.js';
import { initSignature } from './signature.js';

let providerAtStart = null;

// Subscribe at once: events that arrive while the page loads are queued by the log.
const early = [];
let started = false;
onEvent('email-progress', (detail) => (started ? handleProgress(detail) : early.push(['p', detail])));
onEvent('campaign-state', (detail) => (started ? handleState(detail) : early.push(['s', detail])));
onEvent('campaign-wait', (detail) => { if (started) handleWait(detail); });
// The copy in Sent (over IMAP): a failure never stops the sending, but is said with its fix.
onEvent('sent-copy-warning', (detail) => {
  $('#sent-copy-status').replaceChildren(el('p', { class: 'warning', text: `The copy in Sent is not filed${detail.stopped ? ' for this run' : ''} (the sending goes on):` }),
    errorBlock(detail.error || {}));
});
onEvent('sent-copy', (d) => {
  if (!(d.filed || d.already || d.left)) return;
  const parts = [`${d.filed} filed in ${d.folder || 'Sent'}`];
  if (d.already) parts.push(`${d.already} already there`);
  if (d.left) parts.push(`${d.left} left to file (filed when the campaign is resumed)`);
  $('#sent-copy-status').append(el('p', { class: 'hint', text: `Copy in Sent: ${parts.join(', ')}.` }));
});
// A bounce or a reply read from the mailbox: the Activity log's row says so if it shows that campaign.
onEvent('track-change', (detail) => {
  if (started && detail.campaign === currentCampaign()) {
    queueProgress({ campaign: detail.campaign, current: detail.current, recipient: detail.email, status: detail.now });
  }
});

function appStatus(...children) {
  show($('#app-status'), ...children);
}

async function main() {
  const hint = setTimeout(() => {
    if (transportMode() === 'window') {
      appStatus('Waiting for Bulk Mailer… If you opened this page yourself, open the address that `bulk-mailer --web` printed instead (it ends with #token=...).');
    }
  }, 5000);
  await ready();
  clearTimeout(hint);

  const infoResult = await call('app_info');
  if (!infoResult.ok) {
    appStatus(errorBlock(infoResult.error));
    return;
  }
  const info = infoResult.data || {};
  info.providers = Array.isArray(info.providers) ? info.providers : [];
  info.categories = info.categories || {};
  $('#version').textContent = info.version ? `version ${info.version}` : '';

  const settingsResult = await call('load_settings');
  const settings = settingsResult.ok ? settingsResult.data || {} : {};
  if (!settingsResult.ok) {
    appStatus(el('p', { class: 'label', text: 'Saved settings could not be loaded; starting with defaults.' }), errorBlock(settingsResult.error));
  }

  const messageForSave = () => ({ ...getMessage(), delay_ms: getDelay() ?? 1000, connections: getConnections() });
  account.initAccount(info, settings, { messageForSave });
  initSignature(account.getAccount);

  const fixStepsFor = (category) => account.fixStepsFor(category, providerAtStart ?? account.providerKey());
  const refreshIfLocal = () => {
    if (account.providerKey() === 'local-inbox' || providerAtStart === 'local-inbox') refreshInbox({ quiet: true });
  };

  initRecipients(info, {
    onPreviewChange(preview) {
      setFields(templateFields(preview));
      setRecipientTotal((preview.counts && preview.counts.valid) || 0);
      setAttachmentColumns(Array.isArray(preview.columns) ? preview.columns : []);
      saveSoon(); // the draft keeps the list's source and columns
      refreshSteps({ now: true });
    },
  });
  initSuppression({ onChange: refreshPreview });
  initCompose(settings.message, {
    getAccount: account.getAccount,
    getCredentials: account.getCredentials,
    getFromAddress: account.getFromAddress,
    saveSettings: account.saveSettings,
    onTestSent: refreshIfLocal,
  });
  initAttachments(info);
  initTemplates(info, { getMessage, setMessage, onLoaded: refreshAttachments });
  initLog({
    categoryTitle: account.categoryTitle,
    categoryCause: account.categoryCause,
    fixStepsFor,
  });
  const reviewParams = (options = {}) => ({ account: account.getAccount(), message: getMessage(),
    from_address: account.getFromAddress(), ...sendOptions(options) });
  initReview({ getMessage, setMessage, previewParams: () => ({ account: account.getAccount(), message: getMessage(), from_address: account.getFromAddress() }) });
  initSchedule(info, {
    getMessage,
    onLabel: setScheduled,
    onChange() {
      saveSoon();
      refreshSteps();
    },
  });
  initChecks({ request: () => reviewParams() });
  initSteps({
    request: () => reviewParams(),
    onReview(r) {
      clearStaleChecks();
      setReady(r.sendable);
      renderWhen(r.when);
      if (currentView() === 'review') renderReview(r, () => refreshSteps({ now: true }));
    },
  });
  initSend({
    review: (options) => call('check_message', reviewParams(options)).then((r) => (r.ok ? r.data : { error: r.error })),
    skippedFields,
    schedule: getSchedule,
    getAccount: account.getAccount,
    getCredentials: account.getCredentials,
    getFromAddress: account.getFromAddress,
    getMessage,
    recipientCount,
    saveSettings: account.saveSettings,
    categoryTitle: account.categoryTitle,
    rememberProvider() {
      providerAtStart = account.providerKey();
    },
    onRunEnded() {
      refreshIfLocal();
      refreshHistory({ quiet: true });
      refreshSteps({ now: true }); // Review & send's step: no longer "Sending…"
    },
  }, settings.message, info.retry_defaults);
  // Connections follow the provider: its default when chosen (a saved setting wins at start).
  if (!(settings.message && Number.isInteger(settings.message.connections))) setConnections(account.presetConnections());
  $('#provider').addEventListener('change', () => setConnections(account.presetConnections()));
  initInbox(info);
  const interruptedLine = el('span', { class: 'interrupted-line' });
  initHistory({
    zones: zoneList,
    onCancelled: notSending,
    getAccount: account.getAccount,
    getCredentials: account.getCredentials,
    expectRun,
    runStarted(campaign, total) {
      runStarted(campaign, total);
      if (campaign) go('review');
    },
    isBusy,
    onInterrupted(text) {
      interruptedLine.textContent = text || '';
      const status = $('#app-status');
      if (text && !status.contains(interruptedLine)) status.append(interruptedLine);
      else if (!text) interruptedLine.remove();
    },
  });

  await initDraft({
    getMessage,
    setMessage,
    extraSend: draftValues,
    restoreSend: restoreDraft,
    onListRestored: showList,
    onAttachmentsRestored: refreshAttachments,
    onInputsCleared() {
      clearList();
      resetSchedule();
      refreshAttachments();
      // What was shown of the last campaign's list and message goes too.
      $('#paste').value = '';
      show($('#compose-status'));
      $('#preview-area').hidden = true;
      show($('#send-status'));
      refreshSteps({ now: true });
    },
  });
  if (settingsResult.ok) appStatus();
  await syncState();
  go(isBusy() ? 'review' : 'account', { focus: false });
  started = true;
  for (const [kind, detail] of early.splice(0)) (kind === 'p' ? handleProgress : handleState)(detail);
  refreshInbox({ quiet: true });
  refreshHistory({ quiet: true });

  let lost = false;
  onConnectionChange((connected) => {
    if (connected) {
      if (!lost) return;
      lost = false;
      appStatus();
      syncState();
    } else {
      lost = true;
      appStatus(el('p', { class: 'fail-line', text: 'Lost the connection to Bulk Mailer; trying again…' }));
    }
  });
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  appStatus(errorBlock({ title: 'The window could not start', message: String((err && err.message) || err), fix: ['Restart Bulk Mailer'] }));
});
