// Teach mode's training and models: start a teaching job (/v1/teach/jobs), follow its progress,
// say what was taught, and list the models the server holds, to serve or download.
import { call, keyHeaders, refusalOf } from "./api.js";
import { bytes, count, humanize, make, percent } from "./common.js";

const POLL_MS = 400;
const RUNNING = ["queued", "reading", "fitting", "writing"];

const $ = (id) => document.getElementById(id);
const el = {
  modelName: $("teach-model-name"), keepBaseLabel: $("keep-base-label"), keepBase: $("teach-keep-base"),
  train: $("train-button"), progress: $("train-progress"), fill: $("train-fill"), status: $("train-status"),
  result: $("train-result"), summary: $("train-summary"), useModel: $("use-model"), tryLive: $("try-live"),
  modelList: $("model-list"),
};

let job = null;    // the teaching job followed last
let hooks = null;  // {modelServed(), tryLive(), changed(), showError(message)}: see setUpTraining

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a teaching job is running (training another must wait). */
export function training() {
  return Boolean(job && RUNNING.includes(job.state));
}

async function train() {
  hooks.showError("");
  el.result.hidden = true;
  const options = { name: el.modelName.value.trim() || "my-actions",
                    keep_base: el.keepBase.checked && !el.keepBaseLabel.hidden };
  try {
    job = await call("POST", "v1/teach/jobs", { json: options });
  } catch (err) {
    hooks.showError(err.message);
    return;
  }
  await follow(job.id);
}

function stageText(step) {
  if (step.state === "queued") return "Starting…";
  if (step.state === "reading") return `Reading clip ${step.done} of ${step.total}…`;
  if (step.state === "fitting") return "Fitting the new actions…";
  if (step.state === "writing") return "Writing the model file…";
  return "";
}

function stageFraction(step) {
  if (step.state === "reading") return 0.05 + 0.85 * (step.done / Math.max(1, step.total));
  return { queued: 0.02, fitting: 0.92, writing: 0.97, done: 1 }[step.state] || 0;
}

async function follow(jobId) {
  el.progress.hidden = false;
  hooks.changed();
  for (;;) {
    try {
      job = await call("GET", `v1/teach/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      hooks.showError(err.message);
      await sleep(POLL_MS * 5);
      continue;
    }
    el.fill.style.width = `${Math.round(stageFraction(job) * 100)}%`;
    el.status.textContent = stageText(job);
    if (!RUNNING.includes(job.state)) break;
    await sleep(POLL_MS);
  }
  hooks.changed();
  if (job.state === "failed") {
    el.progress.hidden = true;
    hooks.showError(`Teaching failed: ${job.error}`);
    return;
  }
  el.status.textContent = "Done";
  showTaught(job);
  await loadModels();
}

/** Follow a job started earlier (or by another tab) that is still running. */
export async function resumeTraining() {
  const latest = (await call("GET", "v1/teach/jobs"))[0];
  if (latest && RUNNING.includes(latest.state) && !training()) {
    job = latest;
    follow(latest.id);
  }
}

function showTaught(done) {
  const result = done.result || {};
  const clips = Object.values(result.clips || {}).reduce((sum, n) => sum + n, 0);
  const labels = result.labels || [];
  const parts = [`Taught ${count(labels.length, "action")} from ${count(clips, "clip")}` +
                 (result.timings_s ? ` in ${result.timings_s.total.toFixed(1)} s.` : ".")];
  if (typeof result.leave_one_out_accuracy === "number") {
    parts.push(`Leaving each clip out in turn, the others named it right ${percent(result.leave_one_out_accuracy)} ` +
               "of the time.");
  }
  const skipped = Object.keys(result.skipped || {}).length;
  if (skipped) parts.push(`${count(skipped, "clip")} could not be read and were left out.`);
  el.summary.textContent = parts.join(" ");
  el.result.dataset.model = done.model;
  el.useModel.hidden = false;
  el.tryLive.hidden = true;
  el.result.hidden = false;
}

async function useModel(modelId) {
  hooks.showError("");
  try {
    await call("POST", `v1/models/${encodeURIComponent(modelId)}/serve`);
  } catch (err) {
    hooks.showError(err.message);
    return false;
  }
  await hooks.modelServed();
  await loadModels();
  return true;
}

// ------------------------------------------------------------------ models on the server

export async function loadModels() {
  let listed;
  try {
    listed = await call("GET", "v1/models");
  } catch (err) {
    hooks.showError(err.message);
    return;
  }
  el.modelList.replaceChildren(...listed.models.map(renderModel));
}

function renderModel(model) {
  const item = make("li", "model-item");
  item.dataset.model = model.id;
  if (model.error) {
    item.append(make("strong", "", model.id), make("span", "muted", model.error));
    return item;
  }
  const about = make("div", "model-about");
  about.append(make("strong", "", `${model.name} ${model.version || ""}`.trim()));
  const clips = model.taught ? Object.values(model.taught.clips || {}).reduce((sum, n) => sum + n, 0) : 0;
  const what = model.taught ? `taught from ${count(clips, "clip")}` : model.id === "teach-base" ? "what teaching builds on"
    : "the model this server started with";
  const names = model.labels.slice(0, 6).map(humanize).join(", ") + (model.labels.length > 6 ? ", …" : "");
  about.append(make("span", "muted", `${count(model.labels.length, "action")}${names ? `: ${names}` : ""} · ${what} · ` +
                                     bytes(model.size_bytes)));
  const buttons = make("div", "action-buttons");
  if (model.served) {
    buttons.append(make("span", "served-badge", "Serving"));
  } else if (model.id !== "teach-base") {  // the teaching base has no actions of its own to answer with
    const serve = make("button", "button button-small serve-model", "Serve");
    serve.type = "button";
    serve.addEventListener("click", () => useModel(model.id));
    buttons.append(serve);
  }
  const download = make("button", "button button-quiet button-small download-model", "Download");
  download.type = "button";
  download.addEventListener("click", () => downloadModel(model));
  buttons.append(download);
  item.append(about, buttons);
  return item;
}

/** Fetched with the key when there is one (a plain link cannot send it), then saved. */
async function downloadModel(model) {
  try {
    const response = await fetch(model.file, { headers: keyHeaders() });
    if (!response.ok) throw await refusalOf(response, "The download failed.");
    const link = make("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `${model.id}.onnx`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (err) {
    hooks.showError(err.message || "The download failed.");
  }
}

/** Wire the training controls. `given`: {modelServed(), tryLive(), changed() (a job started or
 * ended: Teach mode redraws), showError(message)}. */
export function setUpTraining(given) {
  hooks = given;
  el.train.addEventListener("click", train);
  el.useModel.addEventListener("click", async () => {
    if (await useModel(el.result.dataset.model)) {
      el.useModel.hidden = true;
      el.tryLive.hidden = false;
      el.tryLive.focus();
    }
  });
  el.tryLive.addEventListener("click", () => hooks.tryLive());
}
