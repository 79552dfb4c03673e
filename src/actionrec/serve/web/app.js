// The upload page: pick or drop a video, play it, send it to /v1/predictions, show the answer.
// Or use the camera: frames go to the WebSocket route /v1/live and the live answer shows over them.
import { apiKey, bytes, clock, count, humanize, looksLikeVideo, make, percent } from "./common.js";
import { enterTeach, leaveTeach, setUpTeach } from "./teach.js";

const KEY_STORAGE = "actionrec.apiKey";
const TIMELINE_MIN_SECONDS = 5;  // shorter videos are one window: no timeline worth drawing
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const PALETTE = ["#4f46e5", "#0d9488", "#d97706", "#db2777", "#2563eb", "#65a30d",
                 "#9333ea", "#dc2626", "#0891b2", "#a16207", "#4b5563", "#c026d3"];

const $ = (id) => document.getElementById(id);
const el = {
  modelPill: $("model-pill"), modelName: $("model-name"), modelVersion: $("model-version"),
  modelDataset: $("model-dataset"), modelNotice: $("model-notice"), labelsSummary: $("labels-summary"),
  labelsDetails: $("labels-details"), labelList: $("label-list"),
  keyCard: $("key-card"), keyForm: $("key-form"), keyInput: $("api-key"), keyToggle: $("key-toggle"),
  fileInput: $("file-input"), dropZone: $("drop-zone"), dropTitle: $("drop-title"),
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
};

const state = { model: null, file: null, objectUrl: null, request: null };

// ------------------------------------------------------------------ colours

function colourOf(action) {
  const labels = state.model ? state.model.labels : [];
  const index = Math.max(0, labels.indexOf(action));
  return PALETTE[index % PALETTE.length];
}

// ------------------------------------------------------------------ the model

async function loadModel() {
  try {
    const response = await fetch("v1/model", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    showModel(await response.json());
  } catch (err) {
    el.modelPill.textContent = "Model details unavailable";
    el.modelDataset.textContent = "The server did not describe its model. Predictions may still work.";
  }
}

function showModel(model) {
  state.model = model;
  const labels = model.labels || [];
  const dataset = model.dataset || "unknown data";
  el.modelName.textContent = model.name;
  el.modelVersion.textContent = model.version ? `version ${model.version}` : "";
  const taught = model.model && model.model.taught;
  el.modelDataset.textContent = taught
    ? `Knows ${count(labels.length, "action")} · taught on this server from ${dataset.replace(/^taught: /, "")}`
    : `Knows ${count(labels.length, "action")} · trained on ${dataset}`;

  el.modelPill.replaceChildren("Model: ", make("strong", "", model.name),
                               ` · ${count(labels.length, "action")}`);
  el.modelPill.title = `${model.name} ${model.version || ""} · ${dataset}`;

  if (taught) {
    el.modelNotice.textContent = `Taught on this server from example clips: it knows only the ${count(labels.length, "action")} ` +
      "listed here, and says it is not sure when a video shows none of them.";
    el.modelNotice.hidden = false;
  } else if (!/ucf-?101/i.test(dataset)) {
    el.modelNotice.textContent = `This is not a UCF101 model. It only knows the ${count(labels.length, "action")} ` +
      "listed here, so any video gets the closest of them as its answer.";
    el.modelNotice.hidden = false;
  } else {
    el.modelNotice.hidden = true;
  }
  el.labelsSummary.textContent = `The ${count(labels.length, "action")} it knows`;
  el.labelList.replaceChildren(...labels.map((label) => {
    const chip = make("li", "", humanize(label));
    chip.dataset.label = label;
    return chip;
  }));
  el.labelsDetails.open = labels.length <= 16;

  if (model.api_key_required) showKeyCard();
}

// ------------------------------------------------------------------ API key

function showKeyCard(focus = false) {
  el.keyCard.hidden = false;
  if (focus) el.keyInput.focus();
}

function setUpKey() {
  el.keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  el.keyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, apiKey()));
  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();  // Enter in the field retries what needed the key
    if (document.body.dataset.mode === "teach") enterTeach();
    else if (state.file && !state.request) analyse(state.file);
  });
  el.keyToggle.addEventListener("click", () => {
    const show = el.keyInput.type === "password";
    el.keyInput.type = show ? "text" : "password";
    el.keyToggle.textContent = show ? "Hide" : "Show";
    el.keyToggle.setAttribute("aria-pressed", String(show));
  });
}

// ------------------------------------------------------------------ choosing a file

function choose(file) {
  if (!file) return;
  stopCamera();
  if (state.request) {
    state.request.abort();  // the newest choice wins
    state.request = null;
  }
  if (!looksLikeVideo(file)) {
    resetStage();
    showError("This file isn't a video",
              `“${file.name}” is not a video file. Choose a video (MP4, MOV, WebM, MKV or AVI).`);
    return;
  }
  if (file.size === 0) {
    resetStage();
    showError("This file is empty", `“${file.name}” has no content (0 bytes). Choose another video.`);
    return;
  }
  state.file = file;
  showPreview(file);
  analyse(file);
}

function showPreview(file) {
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  el.playerNote.hidden = true;
  el.video.src = state.objectUrl;
  el.fileName.textContent = `${file.name} · ${bytes(file.size)}`;
  el.player.hidden = false;
  el.dropZone.hidden = true;
  el.timeline.hidden = true;
}

/** Back to the drop zone, e.g. after the server turned the file down. */
function resetStage() {
  state.file = null;
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = null;
  el.video.removeAttribute("src");
  el.video.load();
  el.player.hidden = true;
  el.timeline.hidden = true;
  el.dropZone.hidden = false;
}

function setUpPicking() {
  el.dropZone.addEventListener("click", () => el.fileInput.click());
  el.chooseAnother.addEventListener("click", () => el.fileInput.click());
  el.fileInput.addEventListener("change", () => {
    choose(el.fileInput.files[0]);
    el.fileInput.value = "";  // choosing the same file again still triggers a change
  });

  // The whole window accepts drops, so a near miss doesn't open the file in the tab.
  let depth = 0;
  window.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    el.dropZone.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) el.dropZone.classList.remove("dragging");
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    el.dropZone.classList.remove("dragging");
    if (document.body.dataset.mode === "teach") return;  // Teach mode takes drops on its actions only
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) choose(file);
  });

  el.video.addEventListener("error", () => { el.playerNote.hidden = false; });
  el.video.addEventListener("timeupdate", movePlayhead);
  el.video.addEventListener("seeked", movePlayhead);
  el.retry.addEventListener("click", () => state.file && analyse(state.file));
}

// ------------------------------------------------------------------ asking the server

function analyse(file) {
  showBusy("Uploading…", 0);
  const request = new XMLHttpRequest();
  state.request = request;
  request.open("POST", "v1/predictions?top_k=5&segments=true");
  request.setRequestHeader("Content-Type", file.type.startsWith("video/") ? file.type : "application/octet-stream");
  request.setRequestHeader("Accept", "application/json");
  if (apiKey()) request.setRequestHeader("X-API-Key", apiKey());
  request.responseType = "json";

  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) showBusy(`Uploading… ${Math.round((event.loaded / event.total) * 100)}%`,
                                         event.loaded / event.total);
  });
  request.upload.addEventListener("load", () => showBusy("Analysing the video…", 1));
  request.addEventListener("load", () => {
    state.request = null;
    const body = request.response || {};
    if (request.status === 200) showAnswer(body);
    else showFailure(request.status, body.detail, body.reason, request.getResponseHeader("Retry-After"));
  });
  request.addEventListener("error", () => {
    state.request = null;
    showError("Couldn't reach the server", "Check your connection and try again.", { retry: true });
  });
  request.send(file);
}

function showFailure(status, detail, reason, retryAfter) {
  let said = typeof detail === "string" ? detail.replace(/^the uploaded video: /, "") : "";
  said = said.charAt(0).toUpperCase() + said.slice(1);
  const empty = reason === "empty";
  if ([413, 415, 422].includes(status) || empty) resetStage();  // the file itself was the problem
  if (status === 401) {
    showKeyCard(true);
    showError(apiKey() ? "That API key was not accepted" : "This server needs an API key",
              "Enter the key above, then try again.", { retry: true });
  } else if (empty) {
    showError("This file is empty", "Choose a video that has content.", { detail: said });
  } else if (status === 400) {
    showError("The upload didn't arrive complete", "Try sending it again.", { detail: said, retry: true });
  } else if (status === 413) {
    showError("This video is too large", "Trim it or export it at a lower quality, then try again.",
              { detail: said });
  } else if (status === 415) {
    showError("This file isn't a video", "Choose a video file (MP4, MOV, WebM, MKV or AVI).", { detail: said });
  } else if (status === 422) {
    const [title, text] = explainUnreadable(reason);
    showError(title, text, { detail: said });
  } else if (status === 503) {
    const wait = Number(retryAfter) || 2;
    showError("The server is busy", `It is working on other videos. Try again in ${wait} seconds.`,
              { retry: true });
  } else {
    showError("Something went wrong on the server", "Try again in a moment.",
              { detail: said || (status ? `HTTP ${status}` : ""), retry: true });
  }
}

function explainUnreadable(reason) {  // the server's stable reason codes (README, "reason")
  if (reason === "too_long") return ["This video is too long", "Cut it into shorter pieces and try again."];
  if (reason === "frame_too_large") return ["This video's resolution is too high", "Export it at 1080p or lower and try again."];
  if (reason === "decode_timeout") return ["This video took too long to read", "Try a shorter or smaller version of it."];
  return ["This file isn't a video we can read", "It may be damaged or in a format we don't support. " +
          "Try re-exporting it as MP4."];
}

// ------------------------------------------------------------------ showing states

function showOnly(section) {
  for (const node of [el.empty, el.busy, el.error, el.answer]) node.hidden = node !== section;
  el.result.setAttribute("aria-busy", String(section === el.busy));
}

function showBusy(text, fraction) {
  el.busyText.textContent = text;
  el.progressFill.style.width = `${Math.round(fraction * 100)}%`;
  showOnly(el.busy);
}

function showError(title, text, { detail = "", retry = false } = {}) {
  el.errorTitle.textContent = title;
  el.errorText.textContent = text;
  el.errorDetail.textContent = detail;
  el.errorDetail.hidden = !detail;
  el.retry.hidden = !(retry && state.file);
  el.timeline.hidden = true;
  showOnly(el.error);
}

function showAnswer(answer) {
  el.eyebrow.textContent = "The video shows";
  showTopGuesses(answer);
  showFacts(answer);
  showTimeline(answer.segments || [], answer.video.duration_s);
  showOnly(el.answer);
}

function showTopGuesses(answer) {
  const labelCount = state.model ? state.model.labels.length : answer.top_k.length;
  el.actionName.textContent = humanize(answer.action);
  el.actionName.dataset.label = answer.action;
  el.confidence.replaceChildren(make("strong", "", percent(answer.confidence)), " sure");

  el.uncertainNote.hidden = !answer.uncertain;
  el.uncertainNote.textContent = answer.uncertain
    ? `Not sure. This is only the closest match: the video may show none of the ${labelCount} ` +
      "actions this model knows."
    : "";

  el.bars.replaceChildren(...answer.top_k.map((item, rank) => {
    const row = make("li", rank === 0 ? "bar-row best" : "bar-row");
    row.dataset.label = item.action;
    const fill = make("div", "bar-fill");
    fill.style.width = "0%";
    const track = make("div", "bar-track");
    track.append(fill);
    row.append(make("span", "bar-label", humanize(item.action)),
               make("span", "bar-value", percent(item.confidence)), track);
    requestAnimationFrame(() => { fill.style.width = `${(item.confidence * 100).toFixed(1)}%`; });
    return row;
  }));

  // The uncertainty warning is said in plain words above; list the others (e.g. a broken stream).
  const warnings = (answer.warnings || []).filter((text) => !text.startsWith("The model is unsure"));
  el.warnings.replaceChildren(...warnings.map((text) => make("li", "", text)));
  el.warnings.hidden = warnings.length === 0;
}

function showFacts(answer) {
  const video = answer.video;
  const timings = answer.timings_ms;
  const facts = [
    ["Length", clock(video.duration_s)],
    ["Size", `${video.width} × ${video.height}`],
    ["Frame rate", `${Math.round(video.fps * 10) / 10} fps`],
    ["Codec", String(video.codec || "unknown").toUpperCase()],
    ["Frames analysed", `${video.frames_used.length} of ${video.num_frames}`],
    ["Analysed in", `${(timings.total / 1000).toFixed(timings.total < 10000 ? 2 : 1)} s`],
  ];
  el.facts.replaceChildren(...facts.map(([term, value]) => {
    const row = make("div");
    row.append(make("dt", "", term), make("dd", "", value));
    return row;
  }));
}

// ------------------------------------------------------------------ timeline

function showTimeline(segments, duration) {
  el.track.querySelectorAll(".segment").forEach((node) => node.remove());
  if (!segments.length || !(duration >= TIMELINE_MIN_SECONDS)) {
    el.timeline.hidden = true;
    return;
  }
  for (const segment of segments) {
    const button = make("button", "segment", humanize(segment.action));
    button.type = "button";
    button.dataset.label = segment.action;
    button.dataset.start = String(segment.start_s);
    button.style.left = `${(segment.start_s / duration) * 100}%`;
    button.style.width = `${((segment.end_s - segment.start_s) / duration) * 100}%`;
    button.style.background = colourOf(segment.action);
    const span = `${clock(segment.start_s)} to ${clock(segment.end_s)}`;
    button.title = `${humanize(segment.action)} · ${span} · ${percent(segment.confidence)} sure`;
    button.setAttribute("aria-label", `${humanize(segment.action)} from ${span}, ${percent(segment.confidence)} sure. Jump there.`);
    button.addEventListener("click", () => seek(segment.start_s));
    el.track.insertBefore(button, el.playhead);
  }

  const step = TICK_STEPS.find((seconds) => duration / seconds <= 6) || duration / 5;
  const ticks = [];
  for (let t = 0; t <= duration - step * 0.4; t += step) ticks.push(t);
  el.ticks.replaceChildren(...ticks.map((t) => {
    const tick = make("span", "", clock(t));
    tick.style.left = `${(t / duration) * 100}%`;
    return tick;
  }));

  const actions = [...new Set(segments.map((segment) => segment.action))];
  el.legend.replaceChildren(...actions.map((action) => {
    const item = make("li");
    const swatch = make("span", "swatch");
    swatch.style.background = colourOf(action);
    item.append(swatch, humanize(action));
    return item;
  }));
  el.timeline.dataset.duration = String(duration);
  el.timeline.hidden = false;
  movePlayhead();
}

function seek(seconds) {
  el.video.currentTime = seconds;
  movePlayhead();
}

function movePlayhead() {
  const duration = Number(el.timeline.dataset.duration) || el.video.duration;
  if (!duration) return;
  const fraction = Math.min(1, Math.max(0, el.video.currentTime / duration));
  el.playhead.style.left = `calc(${fraction * 100}% - 1px)`;
}

// ------------------------------------------------------------------ examples

async function loadExamples() {
  let examples = [];
  try {
    const response = await fetch("v1/examples", { headers: { Accept: "application/json" } });
    if (response.ok) examples = await response.json();
  } catch (err) {
    return;  // no examples: the page works without them
  }
  el.exampleList.replaceChildren(...examples.map((example) => {
    const item = make("li");
    const button = make("button", "", humanize(example.label));
    button.type = "button";
    button.dataset.name = example.name;
    button.title = `${example.name} · ${bytes(example.size_bytes)}`;
    button.addEventListener("click", () => tryExample(example));
    item.append(button);
    return item;
  }));
  el.examples.hidden = examples.length === 0;
}

async function tryExample(example) {
  showBusy("Fetching the example…", 0);
  try {
    const response = await fetch(example.url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const blob = await response.blob();
    choose(new File([blob], example.name, { type: "video/mp4" }));
  } catch (err) {
    showError("The example could not be fetched", "Try another, or choose a video of your own.");
  }
}

// ------------------------------------------------------------------ live camera

const live = { stream: null, socket: null, timer: null, intervalMs: 500, sentAt: 0 };

async function startCamera() {
  if (state.request) {
    state.request.abort();
    state.request = null;
  }
  resetStage();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser can't share a camera", "Open the page over https, or from this computer.");
    return;
  }
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    showError("The camera isn't available", err && err.name === "NotAllowedError"
      ? "Allow this page to use the camera, then try again."
      : "No camera was found, or another program is using it.");
    return;
  }
  el.cameraVideo.srcObject = live.stream;
  el.cameraLabel.textContent = "Connecting…";
  el.camera.hidden = false;
  el.dropZone.hidden = true;
  el.cameraRow.hidden = true;

  const url = new URL("v1/live", window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("top_k", "5");
  if (apiKey()) url.searchParams.set("api_key", apiKey());
  const socket = new WebSocket(url);
  live.socket = socket;
  socket.addEventListener("message", (event) => onLiveMessage(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (live.socket !== socket) return;  // stopped on purpose
    if (event.code === 1008) showKeyCard(true);
    if (!el.error.hidden) return;  // the server already said why
    showError("The live stream stopped", event.reason ? `The server closed it (${event.reason}).`
                                                      : "The connection to the server was lost.");
    stopCamera();
  });
}

function onLiveMessage(message) {
  if (message.type === "ready") {
    live.intervalMs = message.sample_interval_s * 1000;
    el.cameraStatus.textContent = `Live · a frame every ${message.sample_interval_s.toFixed(2)} s, ` +
      `answers over the last ${message.window_s.toFixed(1)} s`;
    el.cameraLabel.textContent = "Watching…";
    sendFrameSoon();
  } else if (message.type === "warming_up") {
    el.cameraLabel.textContent = `Watching… ${message.frames} of ${message.needed} frames`;
    sendFrameSoon();
  } else if (message.type === "skipped") {
    sendFrameSoon();
  } else if (message.type === "prediction") {
    el.cameraLabel.textContent = `${humanize(message.action)} · ${percent(message.confidence)}`;
    el.cameraLabel.dataset.label = message.action;
    el.eyebrow.textContent = "Live: the camera shows";
    showTopGuesses(message);
    el.facts.replaceChildren();
    showOnly(el.answer);
    sendFrameSoon();
  } else if (message.type === "error") {
    if (message.reason === "api_key") showKeyCard(true);
    showError("The live stream stopped", message.detail);
    stopCamera();
  }
}

/** One frame in flight at a time, spaced as the server asks: the answer never lags behind. */
function sendFrameSoon() {
  const wait = Math.max(0, live.intervalMs - (performance.now() - live.sentAt));
  clearTimeout(live.timer);
  live.timer = setTimeout(sendFrame, wait);
}

function sendFrame() {
  const video = el.cameraVideo;
  const socket = live.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (!video.videoWidth) {
    live.timer = setTimeout(sendFrame, 100);  // the camera has not shown a frame yet
    return;
  }
  const scale = Math.min(1, 640 / video.videoWidth);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  live.sentAt = performance.now();
  canvas.toBlob((blob) => {
    if (blob && live.socket === socket && socket.readyState === WebSocket.OPEN) socket.send(blob);
  }, "image/jpeg", 0.8);
}

function stopCamera() {
  clearTimeout(live.timer);
  const socket = live.socket;
  live.socket = null;
  if (socket) socket.close();
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  el.cameraVideo.srcObject = null;
  el.camera.hidden = true;
  el.cameraRow.hidden = false;
  if (el.player.hidden) el.dropZone.hidden = false;
}

function setUpCamera() {
  el.cameraStart.addEventListener("click", startCamera);
  el.cameraStop.addEventListener("click", () => {
    stopCamera();
    showOnly(el.empty);
  });
}

// ------------------------------------------------------------------ modes: recognize or teach

const HERO = {
  recognize: [el.heroTitle.textContent, el.heroLede.textContent],
  teach: ["Teach it your own actions",
          "Name an action, record three short clips of it with the camera or add video files, and do the same " +
          "for each action. Train, and seconds later this page recognises them, and says when it sees none of them."],
};

function setMode(mode) {
  const teach = mode === "teach";
  document.body.dataset.mode = mode;
  el.modeRecognize.setAttribute("aria-pressed", String(!teach));
  el.modeTeach.setAttribute("aria-pressed", String(teach));
  [el.heroTitle.textContent, el.heroLede.textContent] = HERO[mode];
  el.workspace.hidden = teach;
  el.teach.hidden = !teach;
  history.replaceState(null, "", teach ? "#teach" : window.location.pathname + window.location.search);
  if (teach) {
    if (state.request) state.request.abort();
    state.request = null;
    stopCamera();  // one camera at a time: Teach mode records with its own
    enterTeach();
  } else {
    leaveTeach();
  }
}

async function setUpModes() {
  document.body.dataset.mode = "recognize";
  el.modeRecognize.addEventListener("click", () => setMode("recognize"));
  el.modeTeach.addEventListener("click", () => setMode("teach"));
  const teaches = await setUpTeach({
    modelServed: loadModel,
    tryLive: () => {
      setMode("recognize");
      startCamera();
    },
    needKey: () => showKeyCard(true),
  });
  el.modes.hidden = !teaches;
  el.footerTeach.hidden = !teaches;
  if (teaches && window.location.hash === "#teach") setMode("teach");
}

// ------------------------------------------------------------------ start

setUpKey();
setUpPicking();
setUpCamera();
setUpModes();
loadModel();
loadExamples();
