// Calling the server's JSON API: the API key goes with each call, and a refusal becomes a
// Refusal that carries the server's stable `reason` code (docs/http-api.md#errors).
import { apiKey } from "./common.js";

const KEY_REASONS = ["api_key_missing", "api_key_wrong", "api_key"];
let keyRefused = () => {};

/** Whether a `reason` says the API key is missing or wrong (HTTP routes, and the live route). */
export function isKeyRefusal(reason) {
  return KEY_REASONS.includes(reason);
}

/** What to do when the server refuses a call for its key (the page shows the key card). */
export function onKeyRefused(callback) {
  keyRefused = callback;
}

/** An error the server (or the network) gave: the server's words, and its reason code. */
export class Refusal extends Error {
  constructor(message, reason = "") {
    super(message);
    this.reason = reason;
  }
}

export function keyHeaders() {
  return apiKey() ? { "X-API-Key": apiKey() } : {};
}

/** A refused answer's body as a Refusal (`fallback`: the words when it has none, e.g. from a proxy). */
export async function refusalOf(response, fallback) {
  const data = await response.json().catch(() => ({}));
  if (isKeyRefusal(data.reason)) keyRefused();
  return new Refusal(typeof data.detail === "string" ? data.detail : fallback, data.reason || "");
}

/** `method path` with a JSON body (`json`) or raw bytes (`body` of `type`): the answer's JSON, or a Refusal. */
export async function call(method, path, { json, body, type } = {}) {
  const headers = { Accept: "application/json", ...keyHeaders() };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = type || "application/octet-stream";
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new Refusal("The server could not be reached. Check the connection and try again.", "network");
  }
  if (!response.ok) throw await refusalOf(response, `The server answered HTTP ${response.status}.`);
  return response.json().catch(() => ({}));
}
