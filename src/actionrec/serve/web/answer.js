// Showing an answer: the action, the top guesses as bars, the video's facts, and for longer
// videos a timeline of segments under the player that seeks when clicked.
import { clock, humanize, make, percent } from "./common.js";
import { showExplanation } from "./explain.js";
import { el, showOnly, state } from "./page.js";

const TIMELINE_MIN_SECONDS = 5;  // shorter videos are one window: no timeline worth drawing
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const PALETTE = ["#4f46e5", "#0d9488", "#d97706", "#db2777", "#2563eb", "#65a30d",
                 "#9333ea", "#dc2626", "#0891b2", "#a16207", "#4b5563", "#c026d3"];

function colourOf(action) {
  const labels = state.model ? state.model.labels : [];
  const index = Math.max(0, labels.indexOf(action));
  return PALETTE[index % PALETTE.length];
}

/** An answer of POST /v1/predictions. */
export function showAnswer(answer) {
  el.eyebrow.textContent = "The video shows";
  showTopGuesses(answer);
  showFacts(answer);
  showTimeline(answer.segments || [], answer.video.duration_s);
  showExplanation(answer);
  showOnly(el.answer);
}

/** The action, how sure, the bars and the warnings: of an upload's answer, or of a live one. */
export function showTopGuesses(answer) {
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

  // The uncertainty warning ("unsure") is said in plain words above; list the others (e.g. a broken stream).
  const warnings = (answer.warning_details || []).filter((warning) => warning.code !== "unsure");
  el.warnings.replaceChildren(...warnings.map((warning) => make("li", "", warning.text)));
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

/** Keep the playhead on the timeline where the player is. */
export function movePlayhead() {
  const duration = Number(el.timeline.dataset.duration) || el.video.duration;
  if (!duration) return;
  const fraction = Math.min(1, Math.max(0, el.video.currentTime / duration));
  el.playhead.style.left = `calc(${fraction * 100}% - 1px)`;
}
