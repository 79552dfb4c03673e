// Who does what, where: the regions an upload is answered for (the whole video, a grid, people, or a
// zone drawn on the video), and each region's box and label drawn over the video while it plays.
import { humanize, make, percent } from "./common.js";
import { el, state } from "./page.js";

const $ = (id) => document.getElementById(id);
const choice = $("regions-choice");
const hint = $("regions-hint");
const overlay = $("regions-overlay");
const list = $("regions-list");
let shown = null;     // the answer whose regions are drawn
let zone = null;      // a drawn zone, as fractions of the frame: [x, y, w, h]
let dragFrom = null;  // where a drag to draw a zone started, as fractions

/** The query that asks for the chosen regions, with a timeline each for a grid or a zone (people get none). */
export function regionsQuery() {
  const value = choice.value === "zone" && zone ? zone.map((v) => v.toFixed(4)).join(",") : choice.value;
  if (!value || value === "zone") return "&segments=true";
  return `&regions=${encodeURIComponent(value)}${value === "people" ? "" : "&segments=true"}`;
}

/** What a region shows now: its timeline's segment at the playing moment, else its answer. */
function answerNow(region) {
  const now = el.video.currentTime;
  const segment = (region.segments || []).find((s) => s.start_s <= now && now < s.end_s);
  return segment ? { action: segment.action, confidence: segment.confidence, uncertain: false }
                 : { action: region.action, confidence: region.confidence, uncertain: region.uncertain };
}

/** Draw `answer`'s regions over the video from now on (none where it has none). */
export function showRegions(answer) {
  shown = answer && Array.isArray(answer.regions) ? answer : null;
  el.player.dataset.regions = shown ? String(shown.regions.length) : "";
  list.hidden = !shown;
  list.replaceChildren(...(shown ? shown.regions : []).map((region) => {
    const item = make("li", region.uncertain ? "region uncertain" : "region");
    item.dataset.region = region.id;
    item.dataset.label = region.action;
    item.append(make("strong", "", region.id), ` ${humanize(region.action)} ${percent(region.confidence)}`,
                region.uncertain ? " (not sure)" : "");
    return item;
  }));
  if (shown && !shown.regions.length) list.append(make("li", "region none", "No region to answer for: see the warnings."));
  draw();
}

/** Where the video's picture lies inside the element (letterboxed), in CSS pixels. */
function picture(width, height) {
  const box = el.video.getBoundingClientRect();
  const scale = Math.min(box.width / width, box.height / height);
  return { scale, left: (box.width - width * scale) / 2, top: (box.height - height * scale) / 2,
           width: box.width, height: box.height };
}

/** A region's box now: a track's where it was seen nearest the playing moment. */
function boxNow(region) {
  if (!region.boxes || !region.boxes.length) return region.box;
  const now = el.video.currentTime;
  let best = region.boxes[0];
  for (const entry of region.boxes) if (Math.abs(entry[0] - now) < Math.abs(best[0] - now)) best = entry;
  return best.slice(1);
}

function draw() {
  const context = overlay.getContext("2d");
  const video = shown && shown.video;
  const rect = el.video.getBoundingClientRect();
  overlay.width = Math.round(rect.width);
  overlay.height = Math.round(rect.height);
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (dragFrom && zone) drawZone(context);
  if (!video || !video.width || !video.height) return;
  const at = picture(video.width, video.height);
  context.font = "600 14px system-ui, sans-serif";
  context.lineWidth = 3;
  for (const region of shown.regions) {
    const [x, y, w, h] = boxNow(region);
    const now = answerNow(region);
    const left = at.left + x * at.scale, top = at.top + y * at.scale;
    context.strokeStyle = now.uncertain ? "#f5b400" : "#35d07f";
    context.strokeRect(left, top, w * at.scale, h * at.scale);
    const label = `${humanize(now.action)} ${percent(now.confidence)}${now.uncertain ? "?" : ""}`;
    const width = context.measureText(label).width + 10;
    context.fillStyle = "rgba(0, 0, 0, 0.7)";
    context.fillRect(left, top, width, 22);
    context.fillStyle = "#fff";
    context.fillText(label, left + 5, top + 16);
  }
}

function drawZone(context) {
  const at = picture(el.video.videoWidth || 1, el.video.videoHeight || 1);
  const [x, y, w, h] = zone;
  context.strokeStyle = "#4da3ff";
  context.lineWidth = 2;
  context.setLineDash([6, 4]);
  context.strokeRect(at.left + x * el.video.videoWidth * at.scale, at.top + y * el.video.videoHeight * at.scale,
                     w * el.video.videoWidth * at.scale, h * el.video.videoHeight * at.scale);
  context.setLineDash([]);
}

/** A pointer's place on the video's picture, as fractions of the frame (clamped to it). */
function fractionAt(event) {
  const rect = overlay.getBoundingClientRect();
  const at = picture(el.video.videoWidth || 1, el.video.videoHeight || 1);
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((event.clientX - rect.left - at.left) / (el.video.videoWidth * at.scale)),
          clamp((event.clientY - rect.top - at.top) / (el.video.videoHeight * at.scale))];
}

function setUpDrawing(analyseAgain) {
  overlay.addEventListener("pointerdown", (event) => {
    if (choice.value !== "zone") return;
    dragFrom = fractionAt(event);
    zone = null;
    overlay.setPointerCapture(event.pointerId);
  });
  overlay.addEventListener("pointermove", (event) => {
    if (!dragFrom) return;
    const [x, y] = fractionAt(event);
    zone = [Math.min(x, dragFrom[0]), Math.min(y, dragFrom[1]), Math.abs(x - dragFrom[0]), Math.abs(y - dragFrom[1])];
    draw();
  });
  overlay.addEventListener("pointerup", () => {
    dragFrom = null;
    if (zone && zone[2] > 0.02 && zone[3] > 0.02) {
      hint.textContent = "Zone drawn. Drag again to draw another.";
      analyseAgain();
    } else {
      zone = null;
      draw();
    }
  });
}

/** The regions menu: a new choice asks again for the video shown. */
export function setUpRegions(analyseAgain) {
  choice.addEventListener("change", () => {
    zone = null;
    const drawing = choice.value === "zone";
    overlay.classList.toggle("drawing", drawing);
    hint.textContent = drawing ? "Drag on the video to draw the zone to watch." : "";
    if (!drawing && state.file) analyseAgain();
  });
  setUpDrawing(analyseAgain);
  const redraw = () => { if (shown) draw(); };
  el.video.addEventListener("timeupdate", redraw);
  el.video.addEventListener("seeked", redraw);
  el.video.addEventListener("loadedmetadata", redraw);
  window.addEventListener("resize", redraw);
  const follow = () => { if (shown && !el.video.paused) draw(); requestAnimationFrame(follow); };
  requestAnimationFrame(follow);
}
