// Recognizing a video file: pick or drop it, play it, send it to POST /v1/predictions, and show
// the answer, or what went wrong in plain words, chosen by the server's `reason` code.
import { isKeyRefusal, keyHeaders } from "./api.js";
import { movePlayhead, showAnswer } from "./answer.js";
import { regionsQuery, setUpRegions, showRegions } from "./regions.js";
import { bytes, looksLikeVideo, videoFormats } from "./common.js";
import { stopCamera } from "./camera.js";
import { hideExplanation } from "./explain.js";
import { cancelUpload, el, resetStage, showBusy, showError, showKeyCard, state } from "./page.js";

/** Choose a video to recognize: the newest choice wins over an upload or a camera in progress. */
export function choose(file) {
  if (!file) return;
  stopCamera();
  cancelUpload();
  if (!looksLikeVideo(file)) {
    resetStage();
    showError("This file isn't a video", `“${file.name}” is not a video file. ${chooseAVideo()}`);
    return;
  }
  if (file.size === 0) {
    resetStage();
    showError("This file is empty", `“${file.name}” has no content (0 bytes). Choose another video.`);
    return;
  }
  state.file = file;
  hideExplanation();
  showPreview(file);
  analyse(file);
}

function chooseAVideo() {
  const formats = videoFormats();
  return formats ? `Choose a video (${formats}).` : "Choose a video file.";
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

export function setUpPicking() {
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
  setUpRegions(() => state.file && analyse(state.file));
}

/** Say which formats the server takes, once GET /v1/model has told. */
export function showFormats() {
  const formats = videoFormats();
  if (formats) el.dropHint.textContent = `or drop it here · ${formats}`;
}

// ------------------------------------------------------------------ asking the server

/** Send `file` to the server, with upload progress (hence XMLHttpRequest, not fetch). */
export function analyse(file) {
  showBusy("Uploading…", 0);
  showRegions(null);
  const request = new XMLHttpRequest();
  state.request = request;
  const query = regionsQuery();  // the whole video is also explained; regions are not
  request.open("POST", `v1/predictions?top_k=5${query}${query.includes("regions=") ? "" : "&explain=true"}`);
  request.setRequestHeader("Content-Type", file.type.startsWith("video/") ? file.type : "application/octet-stream");
  request.setRequestHeader("Accept", "application/json");
  for (const [name, value] of Object.entries(keyHeaders())) request.setRequestHeader(name, value);
  request.responseType = "json";

  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) showBusy(`Uploading… ${Math.round((event.loaded / event.total) * 100)}%`,
                                         event.loaded / event.total);
  });
  request.upload.addEventListener("load", () => showBusy("Analysing the video…", 1));
  request.addEventListener("load", () => {
    state.request = null;
    const body = request.response || {};
    if (request.status >= 200 && request.status < 300) {  // an answer; else an error body
      showAnswer(body);
      showRegions(body);
    }
    else showFailure(body, request.getResponseHeader("Retry-After"), request.status);
  });
  request.addEventListener("error", () => {
    state.request = null;
    showError("Couldn't reach the server", "Check your connection and try again.", { retry: true });
  });
  request.send(file);
}

// What the page says for each `reason` the server gives (docs/http-api.md#errors). `file`: the
// file itself was the problem, so the page goes back to choosing one; `retry`: sending it again may work.
const UNREADABLE = { title: "This file isn't a video we can read", file: true,
                     text: "It may be damaged or in a format we don't support. Try re-exporting it as MP4." };
const INCOMPLETE = { title: "The upload didn't arrive complete", text: "Try sending it again.", retry: true };
const BUSY = { title: "The server is busy", busy: true, retry: true };
const FAILURES = {
  empty: { title: "This file is empty", text: "Choose a video that has content.", file: true },
  upload_interrupted: INCOMPLETE,
  bad_multipart: INCOMPLETE,
  bad_framing: INCOMPLETE,
  upload_timeout: { title: "The upload was too slow", text: "Check your connection and try again.", retry: true },
  upload_too_large: { title: "This video is too large", file: true,
                      text: "Trim it or export it at a lower quality, then try again." },
  not_a_video_type: { title: "This file isn't a video", file: true },  // text: chooseAVideo()
  not_a_video: UNREADABLE,
  no_video_stream: UNREADABLE,
  undecodable: UNREADABLE,
  invalid_video: UNREADABLE,
  decoder_crashed: UNREADABLE,
  decoder_error: UNREADABLE,
  too_long: { title: "This video is too long", text: "Cut it into shorter pieces and try again.", file: true },
  frame_too_large: { title: "This video's resolution is too high", file: true,
                     text: "Export it at 1080p or lower and try again." },
  decode_timeout: { title: "This video took too long to read", text: "Try a shorter or smaller version of it.",
                    file: true },
  busy: BUSY,
  uploads_over_budget: BUSY,
  too_many_connections: BUSY,
  worker_lost: { title: "The server was interrupted", text: "Send the video again in a moment.", retry: true },
  shutting_down: { title: "The server is restarting", text: "Try again in a moment.", retry: true },
  storage_error: { title: "The server could not store this video", text: "Try again in a moment.", retry: true },
  bad_regions: { title: "These regions can't be answered", text: "Choose other regions and try again." },
  people_unavailable: { title: "This server can't find people", text: "Choose a grid or draw a zone instead." },
  storage_full: { title: "The server has no room for this video", retry: true,
                  text: "Try a smaller video, or try again later." },
};

/** An error answer: `body` is {detail, reason, problem?}; `status` only shows when there is no body. */
function showFailure(body, retryAfter, status) {
  const reason = body.reason || "";
  const said = [body.problem, body.detail].find((text) => typeof text === "string") || "";
  if (isKeyRefusal(reason)) {
    showKeyCard(true);
    showError(reason === "api_key_wrong" ? "That API key was not accepted" : "This server needs an API key",
              "Enter the key above, then try again.", { retry: true });
    return;
  }
  const failure = FAILURES[reason];
  if (!failure) {
    showError("Something went wrong on the server", "Try again in a moment.",
              { detail: said || (status ? `HTTP ${status}` : ""), retry: true });
    return;
  }
  if (failure.file) resetStage();
  let text = failure.text || chooseAVideo();
  if (failure.busy) text = `It is working on other videos. Try again in ${Number(retryAfter) || 2} seconds.`;
  showError(failure.title, text, { detail: failure.busy ? "" : said, retry: failure.retry });
}

