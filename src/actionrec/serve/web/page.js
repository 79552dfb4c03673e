// The Recognize mode's elements and state, and the states its answer panel shows (empty, busy,
// an error, an answer), shared by the upload, camera and example modules.

const $ = (id) => document.getElementById(id);
export const el = {
  modelPill: $("model-pill"), modelName: $("model-name"), modelVersion: $("model-version"),
  modelDataset: $("model-dataset"), modelNotice: $("model-notice"), labelsSummary: $("labels-summary"),
  labelsDetails: $("labels-details"), labelList: $("label-list"),
  keyCard: $("key-card"), keyForm: $("key-form"), keyInput: $("api-key"), keyToggle: $("key-toggle"),
  fileInput: $("file-input"), dropZone: $("drop-zone"), dropTitle: $("drop-title"), dropHint: $("drop-hint"),
  player: $("player"), video: $("video"), playerNote: $("player-note"), fileName: $("file-name"),
  chooseAnother: $("choose-another"),
  timeline: $("timeline"), track: $("track"), playhead: $("playhead"), ticks: $("ticks"), legend: $("legend"),
  result: $("result"), empty: $("state-empty"), busy: $("state-busy"), busyText: $("busy-text"),
  progressFill: $("progress-fill"), error: $("state-error"), errorTitle: $("error-title"),
  errorText: $("error-text"), errorDetail: $("error-detail"), retry: $("retry"),
  answer: $("state-result"), actionName: $("action-name"), confidence: $("confidence"),
  uncertainNote: $("uncertain-note"), bars: $("bars"), warnings: $("warnings"), facts: $("facts"),
  eyebrow: $("answer-eyebrow"), cameraRow: $("camera-row"), cameraStart: $("camera-start"), camera: $("camera"),
  cameraVideo: $("camera-video"), cameraLabel: $("camera-label"), cameraStatus: $("camera-status"),
  cameraStop: $("camera-stop"), examples: $("examples"), exampleList: $("example-list"),
  modes: $("modes"), modeRecognize: $("mode-recognize"), modeTeach: $("mode-teach"), heroTitle: $("hero-title"),
  heroLede: $("hero-lede"), workspace: $("workspace"), teach: $("teach"), footerTeach: $("footer-teach"),
  why: $("why"), whySummary: $("why-summary"), whyNote: $("why-note"), moments: $("moments"),
  mapOverlay: $("map-overlay"), mapToggle: $("map-toggle"), mapToggleRow: $("map-toggle-row"),
};

export const state = {
  model: null,      // GET /v1/model
  file: null,       // the video chosen, while it is shown
  objectUrl: null,  // its blob: URL for the player
  request: null,    // the upload in progress (an XMLHttpRequest)
};

/** Stop the upload in progress, if any: the newest choice wins. */
export function cancelUpload() {
  if (state.request) state.request.abort();
  state.request = null;
}

export function showKeyCard(focus = false) {
  el.keyCard.hidden = false;
  if (focus) el.keyInput.focus();
}

/** Back to the drop zone, e.g. after the server turned the file down. */
export function resetStage() {
  state.file = null;
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = null;
  el.video.removeAttribute("src");
  el.video.load();
  el.player.hidden = true;
  el.timeline.hidden = true;
  el.dropZone.hidden = false;
}

export function showOnly(section) {
  for (const node of [el.empty, el.busy, el.error, el.answer]) node.hidden = node !== section;
  el.result.setAttribute("aria-busy", String(section === el.busy));
}

export function showBusy(text, fraction) {
  el.busyText.textContent = text;
  el.progressFill.style.width = `${Math.round(fraction * 100)}%`;
  showOnly(el.busy);
}

export function showError(title, text, { detail = "", retry = false } = {}) {
  el.errorTitle.textContent = title;
  el.errorText.textContent = text;
  el.errorDetail.textContent = detail;
  el.errorDetail.hidden = !detail;
  el.retry.hidden = !(retry && state.file);
  el.timeline.hidden = true;
  showOnly(el.error);
}
