// Talking to the server: the API key (asked once, kept for this tab), JSON and multipart calls, OpenAI-shaped errors.
// Paths are relative to the page, so the studio also works behind a proxy that serves the app under a prefix.

const KEY_ITEM = "higgs-studio-api-key";

/** An error answer from the server: HTTP status, the message, and the request field it names (OpenAI's `param`). */
export class ApiError extends Error {
  constructor(status, message, param = null, kind = null) {
    super(message);
    this.status = status;
    this.param = param;
    this.kind = kind;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

const keyListeners = [];
/** Called with the new key (or "") whenever it changes. */
export function onKeyChange(listener) {
  keyListeners.push(listener);
}

let asking = null;
let keyNeeded = false;

/** True once the server has asked for a key in this page. */
export function needsKey() {
  return keyNeeded;
}

/**
 * Shows the key dialog and resolves with the key typed, or null when the user closes it.
 * Several requests refused at once share one dialog.
 */
export function askKey(refused = false) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("api-key");
  const note = document.getElementById("key-note");
  note.textContent = refused
    ? "The server refused that key. Type another one."
    : "Type one of the keys set in the server's API_KEYS. It is kept for this tab only.";
  input.value = "";
  asking = new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      asking = null;
      const key = dialog.returnValue === "use" ? input.value.trim() : "";
      if (key) sessionStorage.setItem(KEY_ITEM, key);
      keyNeeded = true;
      keyListeners.forEach((f) => f(storedKey()));
      resolve(key || null);
    };
    dialog.addEventListener("close", done);
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = storedKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** JSON text of `value`; BigInt values (seeds go up to 2^63) are written as exact integers. */
export function jsonText(value) {
  const marked = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `\u0000big:${v}` : v));
  return marked.replace(/"\\u0000big:(\d+)"/g, "$1");
}

/** The server's error body as an ApiError (or a generic one when the body is not OpenAI-shaped). */
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: a proxy's page, say */
  }
  const err = body && typeof body.error === "object" && body.error ? body.error : null;
  const message = err?.message || (typeof body?.error === "string" ? body.error : null)
    || `${response.status} ${response.statusText || "error"}`;
  return new ApiError(response.status, message, err?.param ?? null, err?.type ?? null);
}

/**
 * fetch() with the key; on 401 the key is asked for (once) and the request sent again.
 * `json` sends a JSON body, `form` a FormData body. Returns the Response when it is OK, throws ApiError otherwise.
 */
export async function call(path, { method = "GET", json, form, signal, ask = true } = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, signal, headers: headers(json !== undefined ? { "Content-Type": "application/json" } : {}) };
    if (json !== undefined) init.body = jsonText(json);
    if (form !== undefined) init.body = form;
    const response = await fetch(path, init);
    if (response.ok) return response;
    if (response.status === 401 && ask && attempt < 3) {
      const key = await askKey(Boolean(storedKey()) || attempt > 0);
      if (key) continue;
    }
    throw await errorFrom(response);
  }
}

/** GET a JSON document. */
export async function getJSON(path) {
  return (await call(path)).json();
}

/** What this server offers beyond the basics, read from its OpenAPI document when the key allows. */
export async function capabilities() {
  const caps = { transcribe: false, voiceAudio: false, saveVoice: true, fields: new Set() };
  try {
    const doc = await (await call("openapi.json", { ask: false })).json(); // never prompts: optional
    const paths = doc.paths || {};
    caps.transcribe = "/v1/audio/transcriptions" in paths;
    caps.voiceAudio = "/v1/audio/voices/{name}/audio" in paths;
    const speech = doc.components?.schemas?.OpenAISpeech?.properties;
    if (speech) {
      caps.fields = new Set(Object.keys(speech));
      caps.saveVoice = caps.fields.has("save_voice");
    }
  } catch {
    /* the document is optional: keep the defaults */
  }
  return caps;
}
