// The page: says which model the server runs, asks for the API key when it needs one, and
// switches between its modes. Recognize: a video file (upload.js, examples.js, answer.js) or the
// camera (camera.js); Teach (teach.js, teach-models.js). Only `reason` codes and structured
// fields of the server's answers decide what the page does (docs/http-api.md).
import { onKeyRefused } from "./api.js";
import { startCamera, setUpCamera, stopCamera } from "./camera.js";
import { apiKey, count, humanize, make, setVideoExtensions } from "./common.js";
import { loadExamples } from "./examples.js";
import { setUpExplanations } from "./explain.js";
import { cancelUpload, el, showKeyCard, state } from "./page.js";
import { enterTeach, leaveTeach, setUpTeach } from "./teach.js";
import { analyse, setUpPicking, showFormats } from "./upload.js";

const KEY_STORAGE = "actionrec.apiKey";

// ------------------------------------------------------------------ the model

async function loadModel() {
  try {
    const response = await fetch("v1/model", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("no model details");
    showModel(await response.json());
  } catch (err) {
    el.modelPill.textContent = "Model details unavailable";
    el.modelDataset.textContent = "The server did not describe its model. Predictions may still work.";
  }
}

function showModel(model) {
  state.model = model;
  setVideoExtensions(model.video_extensions);
  showFormats();
  const labels = model.labels || [];
  const dataset = model.dataset || "unknown data";
  const taught = model.model && model.model.taught;  // how a model taught on this server was taught
  el.modelName.textContent = model.name;
  el.modelVersion.textContent = model.version ? `version ${model.version}` : "";
  el.modelDataset.textContent = taught
    ? `Knows ${count(labels.length, "action")} · taught on this server from ${taughtFrom(taught)}`
    : `Knows ${count(labels.length, "action")} · trained on ${dataset}`;

  el.modelPill.replaceChildren("Model: ", make("strong", "", model.name),
                               ` · ${count(labels.length, "action")}`);
  el.modelPill.title = `${model.name} ${model.version || ""} · ${dataset}`;

  if (taught) {
    el.modelNotice.textContent = `Taught on this server from example clips: it knows only the ${count(labels.length, "action")} ` +
      "listed here, and says it is not sure when a video shows none of them.";
    el.modelNotice.hidden = false;
  } else if (!/ucf-?101/i.test(dataset)) {  // the dataset's name: what the page was made to show
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

/** "4 example clips of 2 actions", from a taught model's `taught` facts. */
function taughtFrom(taught) {
  const clips = Object.values(taught.clips || {});
  const total = clips.reduce((sum, n) => sum + n, 0);
  return `${count(total, "example clip")} of ${count(clips.length, "action")}`;
}

// ------------------------------------------------------------------ API key

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
  onKeyRefused(() => showKeyCard(true));
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
    cancelUpload();
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
  });
  el.modes.hidden = !teaches;
  el.footerTeach.hidden = !teaches;
  if (teaches && window.location.hash === "#teach") setMode("teach");
}

// ------------------------------------------------------------------ start

setUpKey();
setUpPicking();
setUpExplanations();
setUpCamera();
setUpModes();
loadModel();
loadExamples();
