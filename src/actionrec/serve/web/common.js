// What the page's modules share: how labels, figures and times are written, which files are videos
// (by the server's list), and making elements.

/** "move_left" -> "Move left", "ApplyEyeMakeup" -> "Apply Eye Makeup". */
export function humanize(label) {
  const words = String(label).replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** 1 -> "1 action", 3 -> "3 actions". */
export function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

export function percent(value) {
  const p = value * 100;
  if (p > 0 && p < 1) return "<1%";
  return `${p >= 10 ? Math.round(p) : p.toFixed(1).replace(/\.0$/, "")}%`;
}

/** 83.4 -> "1:23"; under a minute, tenths are kept when there are any ("0:03.7"). */
export function clock(seconds) {
  const tenths = Math.round(Math.max(0, seconds) * 10);
  const whole = Math.floor(tenths / 10);
  const rest = whole % 60;
  const fraction = whole < 60 && tenths % 10 ? `.${tenths % 10}` : "";
  return `${Math.floor(whole / 60)}:${rest < 10 ? "0" : ""}${rest}${fraction}`;
}

export function bytes(size) {
  if (size < 1024 * 1024) return `${Math.max(1, Math.round(size / 1024))} KB`;
  return `${(size / (1024 * 1024)).toFixed(1)} MB`;
}

let videoExtensions = null;  // [".mp4", ...]: what the server takes for a video by its name (GET /v1/model)

/** Take the server's list of video file extensions (`video_extensions` of GET /v1/model). */
export function setVideoExtensions(extensions) {
  videoExtensions = Array.isArray(extensions) ? extensions.map((extension) => extension.toLowerCase()) : null;
  for (const input of document.querySelectorAll("input[type=file][data-videos]")) {
    input.accept = ["video/*", ...(videoExtensions || [])].join(",");
  }
}

/** The video formats the server names, for people: "AVI, MP4, MOV or MKV" ("" before it has said). */
export function videoFormats() {
  const names = (videoExtensions || []).map((extension) => extension.replace(/^\./, "").toUpperCase());
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}` : names.join("");
}

/** Whether a chosen or dropped file is a video, by its type, else by the server's list of extensions.
 * A name without an extension, or a list the server has not given, leaves it to the server. */
export function looksLikeVideo(file) {
  if (file.type && file.type !== "application/octet-stream") return file.type.startsWith("video/");
  const extension = (/\.[a-z0-9]{1,5}$/i.exec(file.name) || [""])[0].toLowerCase();
  return !extension || !videoExtensions || videoExtensions.includes(extension);
}

export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The API key typed on the page, or "" (the key card's field, kept for the tab). */
export function apiKey() {
  return document.getElementById("api-key").value.trim();
}
