// Recognizing live: camera frames go to the WebSocket route /v1/live, and its answers show over
// the picture and beside it. One frame is in flight at a time, spaced as the server asks.
import { isKeyRefusal } from "./api.js";
import { showTopGuesses } from "./answer.js";
import { hideExplanation } from "./explain.js";
import { apiKey, humanize, percent } from "./common.js";
import { cancelUpload, el, resetStage, showError, showKeyCard, showOnly } from "./page.js";

const live = { stream: null, socket: null, timer: null, intervalMs: 500, sentAt: 0 };

export async function startCamera() {
  cancelUpload();
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
    if (isKeyRefusal(event.reason)) showKeyCard(true);  // the server closes with its reason code
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
    hideExplanation();  // live answers are not explained
    el.facts.replaceChildren();
    showOnly(el.answer);
    sendFrameSoon();
  } else if (message.type === "error") {
    if (isKeyRefusal(message.reason)) showKeyCard(true);
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

export function stopCamera() {
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

export function setUpCamera() {
  el.cameraStart.addEventListener("click", startCamera);
  el.cameraStop.addEventListener("click", () => {
    stopCamera();
    showOnly(el.empty);
  });
}
