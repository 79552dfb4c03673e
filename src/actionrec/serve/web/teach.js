// Teach mode: name actions, give each a few clips (recorded from the camera or chosen as files),
// train a model of them on the server (/v1/teach; teach-models.js), follow its progress, then serve it.
import { call, isKeyRefusal, keyHeaders } from "./api.js";
import { bytes, count, looksLikeVideo, make } from "./common.js";
import { loadModels, resumeTraining, setUpTraining, training } from "./teach-models.js";

const CLIP_MS = 3000;     // a recorded clip: 3 s, inside the 2-4 s the server's guide asks for
const COUNTDOWN_S = 3;    // time to step back into view before recording starts
const RECORDER_TYPES = ["video/webm;codecs=vp8", "video/webm", "video/mp4"];

const $ = (id) => document.getElementById(id);
const el = {
  video: $("teach-video"), countdown: $("teach-countdown"), cameraLabel: $("teach-camera-label"),
  cameraHint: $("teach-camera-hint"), cameraToggle: $("teach-camera-toggle"),
  base: $("teach-base"), note: $("teach-note"), actionForm: $("action-form"), actionInput: $("action-input"),
  error: $("teach-error"), actionList: $("action-list"), limits: $("teach-limits"), fileInput: $("teach-file-input"),
  keepBaseLabel: $("keep-base-label"), keepBase: $("teach-keep-base"), keepBaseText: $("keep-base-text"),
  train: $("train-button"),
};

const state = {
  about: null,         // GET /v1/teach: what teaching builds on, its limits, a note
  actions: [],         // [{action, clips: [facts]}], as the server holds them
  pending: [],         // names added on the page that have no clip yet
  busy: new Map(),     // action -> what is being done to it ("Recording…", "Adding clip 2 of 3…")
  stream: null,
  recording: null,    // {cancelled, recorder} while a clip is counted down or recorded
  fileTarget: null,    // the action the file chooser adds to
};

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = !message;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ what teaching builds on

async function loadAbout() {
  const about = await call("GET", "v1/teach");
  state.about = about;
  const base = about.base;
  if (base) {
    const weights = String(base.backbone_weights || "");
    const features = /^imagenet/i.test(weights) ? "frozen ImageNet features"
      : weights === "none" ? "features not trained on ImageNet: real footage needs an ImageNet base"
        : "its own backbone's features";
    el.base.textContent = `New actions are taught on the encoder of ${base.name} ${base.version || ""}`.trim() +
      ` (${features}). Give each action 3 to 5 clips of 2-4 s; one action can be "nothing", you standing still.`;
    el.keepBaseText.textContent = `Keep its ${count(base.labels.length, "action")} too`;
    el.keepBaseLabel.hidden = !base.can_keep_actions;
  }
  el.note.textContent = about.note || "";
  el.note.hidden = !about.note;
  const limits = about.limits;
  el.limits.textContent = `Up to ${limits.max_actions} actions and ${limits.max_clips_per_action} clips an action; ` +
    `a clip may be up to ${limits.max_clip_s} s and ${limits.max_clip_mb} MB. Clips are checked as they are added.`;
  el.actionInput.maxLength = limits.max_name;
}

// ------------------------------------------------------------------ actions and their clips

// Names are one action when their keys match, as the server compares them (actionrec.teaching.names:
// NFKC, case folded, Cyrillic and Greek look-alikes taken as Latin letters). toLowerCase stands in for
// case folding, with the folds it lacks that matter here ("ß" is "ss", a final "ς" is "σ").
const LOOK_ALIKES = "авеніјкморсѕтухԁԛԝӏαβεζηικμνορτυχ";
const LATIN = "abehijkmopcstyxdqwlabezhikmvoptux";

function nameKey(name) {
  const folded = name.split(/\s+/).filter(Boolean).join(" ").normalize("NFKC").toLowerCase()
    .replaceAll("ß", "ss").replaceAll("ς", "σ").normalize("NFKC");
  return [...folded].map((letter) => {
    const at = LOOK_ALIKES.indexOf(letter);
    return at < 0 ? letter : LATIN[at];
  }).join("");
}

async function loadExamples() {
  const listed = await call("GET", "v1/teach/examples");
  state.actions = listed.actions;
  const held = new Set(state.actions.map((entry) => nameKey(entry.action)));
  state.pending = state.pending.filter((name) => !held.has(nameKey(name)));
  renderActions();
}

function allActions() {
  return [...state.actions, ...state.pending.map((action) => ({ action, clips: [] }))];
}

function addAction(event) {
  event.preventDefault();
  const name = el.actionInput.value.split(/\s+/).filter(Boolean).join(" ");
  if (!name) {
    showError("Type the action's name first, e.g. squat or waving.");
    return;
  }
  const existing = allActions().find((entry) => nameKey(entry.action) === nameKey(name));
  if (existing) {
    showError(`There is already an action named “${existing.action}”. Add clips to it, or choose another name.`);
    return;
  }
  if (state.about && allActions().length >= state.about.limits.max_actions) {
    showError(`This server takes at most ${state.about.limits.max_actions} actions. Remove one first.`);
    return;
  }
  showError("");
  state.pending.push(name);
  el.actionInput.value = "";
  renderActions();
}

function renderActions() {
  const entries = allActions();
  if (!entries.length) {
    el.actionList.replaceChildren(make("li", "action-empty muted",
      "No actions yet. Name one above, then record or add a few clips of it."));
  } else {
    el.actionList.replaceChildren(...entries.map(renderAction));
  }
  const ready = state.actions.filter((entry) => entry.clips.length).length;
  const keepBase = el.keepBase.checked && !el.keepBaseLabel.hidden ? state.about.base.labels.length : 0;
  el.train.disabled = training() || ready + keepBase < 2 || state.busy.size > 0;
  el.train.title = ready + keepBase < 2 ? "Give clips to at least two actions first" : "";
}

function renderAction(entry) {
  const item = make("li", "action-item");
  item.dataset.action = entry.action;
  const head = make("div", "action-head");
  const clipCount = entry.clips.length;
  head.append(make("strong", "action-title", entry.action),
              make("span", "muted", count(clipCount, "clip")));
  const doing = state.busy.get(entry.action);
  if (doing) head.append(make("span", "action-busy", doing));

  const buttons = make("div", "action-buttons");
  const record = make("button", "button button-small record", "Record a clip");
  record.type = "button";
  record.disabled = Boolean(state.recording || doing);
  record.addEventListener("click", () => recordFor(entry.action));
  const files = make("button", "button button-quiet button-small add-files", "Add files");
  files.type = "button";
  files.disabled = Boolean(doing);
  files.addEventListener("click", () => {
    state.fileTarget = entry.action;
    el.fileInput.click();
  });
  const remove = make("button", "button button-quiet button-small remove-action", "Remove");
  remove.type = "button";
  remove.disabled = Boolean(doing);
  remove.setAttribute("aria-label", `Remove ${entry.action} and its clips`);
  remove.addEventListener("click", () => removeAction(entry));
  buttons.append(record, files, remove);

  const clips = make("ul", "clip-list");
  if (!clipCount) clips.append(make("li", "clip-empty muted", "No clips yet: record some, or drop video files here."));
  entry.clips.forEach((clip, index) => {
    const chip = make("li", "clip");
    chip.dataset.clip = clip.id;
    chip.append(make("span", "", `${index + 1} · ${clip.duration_s.toFixed(1)} s · ${bytes(clip.bytes)}`));
    const drop = make("button", "clip-remove", "×");
    drop.type = "button";
    drop.disabled = Boolean(doing);
    drop.setAttribute("aria-label", `Remove clip ${index + 1} of ${entry.action}`);
    drop.addEventListener("click", () => removeClip(entry.action, clip));
    chip.append(drop);
    clips.append(chip);
  });
  item.append(head, buttons, clips);

  item.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.stopPropagation();
    item.classList.add("dragging");
  });
  item.addEventListener("dragleave", () => item.classList.remove("dragging"));
  item.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();  // the page's own drop handler would take it for recognition
    item.classList.remove("dragging");
    addFiles(entry.action, [...((event.dataTransfer && event.dataTransfer.files) || [])]);
  });
  return item;
}

function setBusy(action, text) {
  if (text) state.busy.set(action, text);
  else state.busy.delete(action);
  renderActions();
}

/** Upload one clip of `action`: "" once the server has kept it, else why it did not. */
async function sendClip(action, blob) {
  const type = (blob.type || "").split(";")[0] || "application/octet-stream";
  try {
    await call("POST", `v1/teach/examples?action=${encodeURIComponent(action)}`, { body: blob, type });
    return "";
  } catch (err) {
    if (err.reason === "invalid_action_name") {
      state.pending = state.pending.filter((name) => name !== action);  // the name itself cannot be used
    }
    return err.message;
  }
}

async function addFiles(action, files) {
  if (!files.length) return;
  const limits = state.about ? state.about.limits : null;
  const problems = [];
  const usable = files.filter((file) => {
    if (!looksLikeVideo(file)) problems.push(`“${file.name}” is not a video file.`);
    else if (file.size === 0) problems.push(`“${file.name}” is empty.`);
    else if (limits && file.size > limits.max_clip_mb * 1024 * 1024) {
      problems.push(`“${file.name}” is ${bytes(file.size)}, over this server's ${limits.max_clip_mb} MB a clip.`);
    } else return true;
    return false;
  });
  showError(problems.join(" "));
  for (const [index, file] of usable.entries()) {
    setBusy(action, usable.length > 1 ? `Adding clip ${index + 1} of ${usable.length}…` : "Adding the clip…");
    const refused = await sendClip(action, file);
    if (refused) {
      problems.push(`${file.name}: ${refused}`);
      showError(problems.join(" "));
      if (!allActions().some((entry) => entry.action === action)) break;  // the name was refused
    }
    await loadExamples().catch((err) => showError(err.message));
  }
  setBusy(action, null);
}

async function removeClip(action, clip) {
  try {
    await call("DELETE", `v1/teach/examples/${encodeURIComponent(action)}/${encodeURIComponent(clip.id)}`);
    showError("");
  } catch (err) {
    showError(err.message);
  }
  await loadExamples().catch((err) => showError(err.message));
}

async function removeAction(entry) {
  if (!entry.clips.length) {
    state.pending = state.pending.filter((name) => name !== entry.action);
    renderActions();
    return;
  }
  if (!window.confirm(`Remove “${entry.action}” and its ${count(entry.clips.length, "clip")} from this server?`)) return;
  try {
    await call("DELETE", `v1/teach/examples/${encodeURIComponent(entry.action)}`);
    showError("");
  } catch (err) {
    showError(err.message);
  }
  await loadExamples().catch((err) => showError(err.message));
}

// ------------------------------------------------------------------ the camera

async function startCamera() {
  if (state.stream) return true;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    showError("This browser can't record from a camera here. Open the page over https or from this computer, " +
              "or add video files instead.");
    return false;
  }
  el.cameraLabel.textContent = "Starting the camera…";
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    el.cameraLabel.textContent = "The camera is off";
    showError(err && err.name === "NotAllowedError"
      ? "Allow this page to use the camera, then try again (or add video files instead)."
      : "No camera was found, or another program is using it. You can add video files instead.");
    return false;
  }
  el.video.srcObject = state.stream;
  el.cameraLabel.textContent = "Ready: choose Record a clip beside an action";
  el.cameraToggle.textContent = "Stop camera";
  return true;
}

/** Turn the camera off; a countdown or recording in progress is cancelled and nothing is kept. */
function stopCamera() {
  if (state.recording) {
    state.recording.cancelled = true;
    const recorder = state.recording.recorder;
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  el.video.srcObject = null;
  el.cameraLabel.textContent = "The camera is off";
  el.cameraToggle.textContent = "Start camera";
}

/** `ms` of `stream` as one video Blob; `recording.recorder` is the recorder, so it can be stopped early. */
function recordClip(stream, ms, recording) {
  return new Promise((resolve, reject) => {
    const type = RECORDER_TYPES.find((candidate) => MediaRecorder.isTypeSupported(candidate));
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    recording.recorder = recorder;
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
    recorder.addEventListener("stop", () => resolve(new Blob(chunks, { type: recorder.mimeType || type })));
    recorder.addEventListener("error", (event) => reject(event.error || new Error("the recording failed")));
    recorder.start();
    setTimeout(() => { if (recorder.state !== "inactive") recorder.stop(); }, ms);
  });
}

async function recordFor(action) {
  if (state.recording) return;
  if (!(await startCamera())) return;
  showError("");
  const recording = { cancelled: false, recorder: null };
  state.recording = recording;
  setBusy(action, "Recording…");
  try {
    el.countdown.hidden = false;
    for (let left = COUNTDOWN_S; left > 0 && !recording.cancelled; left -= 1) {
      el.countdown.textContent = String(left);
      el.cameraLabel.textContent = `Get ready to show “${action}”`;
      await sleep(1000);
    }
    let blob = null;
    if (!recording.cancelled) {
      el.countdown.textContent = "";
      el.countdown.classList.add("recording");
      el.cameraLabel.textContent = `Recording “${action}”…`;
      blob = await recordClip(state.stream, CLIP_MS, recording);
    }
    el.countdown.classList.remove("recording");
    el.countdown.hidden = true;
    if (recording.cancelled) {
      el.cameraLabel.textContent = "The camera is off";
      showError(`Recording “${action}” was stopped; nothing was kept.`);
      return;
    }
    el.cameraLabel.textContent = "Checking the clip…";
    setBusy(action, "Adding the clip…");
    const refused = await sendClip(action, blob);
    if (refused) showError(`The recorded clip was not kept: ${refused}`);
    await loadExamples();
    el.cameraLabel.textContent = refused ? "Ready: try again" : "Ready: record another clip, or train";
  } catch (err) {
    showError(`The clip could not be recorded (${err.message}). Try again, or add a video file.`);
  } finally {
    el.countdown.hidden = true;
    el.countdown.classList.remove("recording");
    state.recording = null;
    setBusy(action, null);
  }
}

// ------------------------------------------------------------------ entering and leaving

export async function enterTeach() {
  showError("");
  try {
    await loadAbout();
    await loadExamples();
    await loadModels();
    await resumeTraining();
  } catch (err) {
    showError(err.message);
  }
}

export function leaveTeach() {
  stopCamera();
}

/** Wire the Teach mode's controls. `hooks`: {modelServed(), tryLive()}. Resolves to whether this
 * server teaches (its Teach mode is worth offering). */
export async function setUpTeach(hooks) {
  el.actionForm.addEventListener("submit", addAction);
  el.cameraToggle.addEventListener("click", () => (state.stream ? stopCamera() : startCamera()));
  el.fileInput.addEventListener("change", () => {
    const files = [...el.fileInput.files];
    el.fileInput.value = "";
    if (state.fileTarget) addFiles(state.fileTarget, files);
  });
  el.keepBase.addEventListener("change", renderActions);
  setUpTraining({ ...hooks, changed: renderActions, showError });
  renderActions();
  try {
    const response = await fetch("v1/teach", { headers: keyHeaders() });
    const about = await response.json().catch(() => ({}));
    if (isKeyRefusal(about.reason)) return true;  // behind the key: the mode asks for it
    return response.ok && about.enabled === true;
  } catch (err) {
    return false;
  }
}
