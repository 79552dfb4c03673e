// Why the answer: under it, a strip of the sampled moments (a thumbnail each, a bar as tall as its
// weight: up for evidence for the answer, down against; a click seeks the video there), and over the
// video while it plays, the map of where in the picture the evidence lies. A model file without frame
// maps (warning code `no_map`) gives the moments only, and the page says why.
import { clock, humanize, make } from "./common.js";
import { el, state } from "./page.js";

const WHY_NOT = {
  no_map: "This model file gives no map of where in the picture (it was exported before maps, or taught " +
          "on such a file): export it again with a current actionrec for one.",
  few_moments: "The video has fewer distinct frames than the model samples: one moment per frame it has.",
  one_moment: "The video has a single distinct frame: there are no moments to compare.",
};
const THUMB_HEIGHT = 54;
let thumbnails = null;  // the helper video drawing the current strip's thumbnails

/** The explanation of an answer of POST /v1/predictions?explain=true, or hide it (none given). */
export function showExplanation(answer) {
  const explanation = answer.explanation;
  stopThumbnails();
  el.why.hidden = !explanation;
  showMap(explanation ? explanation.map : null);
  if (!explanation) return;
  el.whySummary.textContent = explanation.summary
    ? `${humanize(explanation.action)}: ${explanation.summary}.` : "";
  const notes = (explanation.warnings || []).map((code) => WHY_NOT[code]).filter(Boolean);
  el.whyNote.textContent = notes.join(" ");
  el.whyNote.hidden = notes.length === 0;
  el.mapToggleRow.hidden = !explanation.map;
  showMoments(explanation.moments || []);
}

function showMoments(moments) {
  const largest = Math.max(1e-9, ...moments.map((moment) => Math.abs(moment.weight)));
  const best = moments.reduce((top, moment, index) => (moment.weight > moments[top].weight ? index : top), 0);
  const canvases = [];
  el.moments.replaceChildren(...moments.map((moment, index) => {
    const item = make("li", "moment");
    const button = make("button", index === best && moment.weight > 0 ? "moment-button best" : "moment-button");
    button.type = "button";
    button.dataset.time = String(moment.time_s);
    button.dataset.weight = String(moment.weight);
    const effect = moment.weight > 0 ? "evidence for the answer" : moment.weight < 0 ? "evidence against it" : "no effect";
    button.setAttribute("aria-label", `${clock(moment.time_s)}: ${effect} (weight ${moment.weight}). Jump there.`);
    button.title = `${clock(moment.time_s)} · ${effect}`;
    const canvas = make("canvas", "moment-thumb");
    canvas.height = THUMB_HEIGHT;
    canvas.width = Math.round(THUMB_HEIGHT * 4 / 3);
    canvases.push([canvas, moment.time_s]);
    const bar = make("span", moment.weight >= 0 ? "moment-bar up" : "moment-bar down");
    bar.style.height = `${(Math.abs(moment.weight) / largest) * 50}%`;  // half the box each way
    const barBox = make("span", "moment-bars");
    barBox.append(bar);
    button.append(canvas, barBox, make("span", "moment-time", clock(moment.time_s)));
    button.addEventListener("click", () => {
      el.video.currentTime = moment.time_s;
    });
    item.append(button);
    return item;
  }));
  drawThumbnails(canvases);
}

/** Each moment's frame into its canvas, from a second, hidden player of the same file, one seek at a time. */
function drawThumbnails(canvases) {
  if (!state.objectUrl || !canvases.length) return;
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = state.objectUrl;
  thumbnails = video;
  let next = 0;
  const seekNext = () => {
    if (thumbnails !== video || next >= canvases.length) { stopThumbnails(video); return; }
    video.currentTime = canvases[next][1];
  };
  video.addEventListener("seeked", () => {
    const [canvas] = canvases[next];
    if (video.videoWidth) {
      canvas.width = Math.round(THUMB_HEIGHT * video.videoWidth / video.videoHeight);
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      canvas.dataset.drawn = "true";
    }
    next += 1;
    seekNext();
  });
  video.addEventListener("loadeddata", seekNext, { once: true });
  video.addEventListener("error", () => stopThumbnails(video));  // a format the browser cannot play: bars only
}

function stopThumbnails(video = thumbnails) {
  if (!video) return;
  if (thumbnails === video) thumbnails = null;
  video.removeAttribute("src");
  video.load();
}

// ------------------------------------------------------------------ the map over the video

function showMap(map) {
  const overlay = el.mapOverlay;
  overlay.replaceChildren();
  overlay.hidden = true;
  if (!map) return;
  const weights = map.weights.flat();
  const largest = Math.max(1e-9, ...weights);
  overlay.style.gridTemplateColumns = `repeat(${map.cols}, 1fr)`;
  overlay.style.gridTemplateRows = `repeat(${map.rows}, 1fr)`;
  overlay.append(...weights.map((weight) => {
    const cell = make("span", "map-cell");
    const strength = Math.max(0, weight) / largest;
    cell.style.opacity = (0.7 * strength).toFixed(3);
    cell.dataset.weight = String(weight);
    return cell;
  }));
  overlay.hidden = !el.mapToggle.checked;
  placeMap();
}

/** The overlay over the picture itself: the player letterboxes the video inside its box. */
export function placeMap() {
  const video = el.video;
  const overlay = el.mapOverlay;
  const width = video.clientWidth;
  const height = video.clientHeight;
  if (!video.videoWidth || !width || !height) {
    Object.assign(overlay.style, { left: "0px", top: "0px", width: `${width}px`, height: `${height}px` });
    return;
  }
  const scale = Math.min(width / video.videoWidth, height / video.videoHeight);
  const shown = [video.videoWidth * scale, video.videoHeight * scale];
  Object.assign(overlay.style, {
    left: `${video.offsetLeft + (width - shown[0]) / 2}px`, top: `${video.offsetTop + (height - shown[1]) / 2}px`,
    width: `${shown[0]}px`, height: `${shown[1]}px`,
  });
}

export function setUpExplanations() {
  el.mapToggle.addEventListener("change", () => {
    el.mapOverlay.hidden = !el.mapToggle.checked || !el.mapOverlay.childElementCount;
  });
  el.video.addEventListener("loadedmetadata", placeMap);
  window.addEventListener("resize", placeMap);
}

/** No explanation (a new video chosen, the camera started): nothing of the last one shows. */
export function hideExplanation() {
  stopThumbnails();
  el.why.hidden = true;
  showMap(null);
}
