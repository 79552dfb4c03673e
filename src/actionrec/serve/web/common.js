// What the page's modules share: how labels, figures and times are written, and making elements.

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

/** Whether a chosen or dropped file is a video, by its type or else its name. */
export function looksLikeVideo(file) {
  if (!file.type || file.type === "application/octet-stream") {
    return /\.(mp4|m4v|mov|qt|webm|mkv|avi|wmv|flv|mpe?g|3gp|3g2|ts|mts|m2ts|ogv)$/i.test(file.name) ||
           !/\.[a-z0-9]{1,5}$/i.test(file.name);
  }
  return file.type.startsWith("video/");
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
