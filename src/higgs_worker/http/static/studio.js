// The studio page: the speak form, streamed or whole-file generation, takes, server state. Plain ES modules, no
// build step; every request goes through the public API (`POST /v1/audio/speech`, `/v1/audio/voices`, `/health`).

import { ApiError, askKey, call, capabilities, needsKey, onKeyChange, storedKey } from "./api.js";
import { audioContext, base64Bytes, EncodedStream, MEDIA_TYPES, StreamPlayer } from "./audio.js";
import * as dialogue from "./dialogue.js";
import { clearErrors, clearOnEdit, showError, showNextTo } from "./errors.js";
import { addTake, fail, finish, restoreTakes } from "./takes.js";
import { loadVoices, onVoices, setCapabilities, uploadVoice } from "./voices.js";
import { addWords, highlighter } from "./words.js";

const $ = (id) => document.getElementById(id);
const form = $("speak");
const formError = $("form-error");
const progress = $("progress");
const chunkBar = $("chunk-bar");

/** Long text comes in chunks: "chunk 3 of 22" and a bar while they are generated (hidden for one chunk). */
function showChunks(event) {
  if (!(event.chunks > 1)) return "";
  chunkBar.hidden = false;
  chunkBar.max = event.chunks;
  chunkBar.value = Math.min(event.chunks, (event.chunks_done ?? 0) + (event.chunk > event.chunks_done ? 0.5 : 0));
  chunkBar.setAttribute("aria-valuetext", `chunk ${event.chunk} of ${event.chunks}`);
  return `Chunk ${event.chunk} of ${event.chunks}. `;
}

function hideChunks() {
  chunkBar.hidden = true;
  chunkBar.value = 0;
}
const generateButton = $("generate");
const stopButton = $("stop");

const MODEL = "higgs-audio-v2";

// -- mode -------------------------------------------------------------------------------------------------------

function mode() {
  return form.querySelector("input[name=mode]:checked").value;
}

function showMode() {
  const dialogueMode = mode() === "dialogue";
  $("single-mode").hidden = dialogueMode;
  $("dialogue-mode").hidden = !dialogueMode;
  showCount();
}

// -- the text: its length against the server's limit, opened from a file, a pasted dialogue script ---------------

let maxChars = null; // MAX_TEXT_CHARS, from /health

function textLength() {
  return mode() === "single" ? [...$("text").value].length : dialogue.textLength();
}

function showCount() {
  const n = textLength();
  const box = $("char-count");
  const over = maxChars !== null && n > maxChars;
  box.textContent = maxChars === null ? `${n.toLocaleString("en")} characters`
    : `${n.toLocaleString("en")} of ${maxChars.toLocaleString("en")} characters`;
  box.classList.toggle("over", over);
  box.dataset.over = String(over);
}

/** Refuses text over the limit before asking the server; true when it did. */
function overLimit() {
  const n = textLength();
  if (maxChars === null || n <= maxChars) return false;
  const control = mode() === "single" ? $("text") : $("lines");
  showNextTo(control, `is ${n.toLocaleString("en")} characters; the limit is ${maxChars.toLocaleString("en")} (MAX_TEXT_CHARS)`);
  (control.tagName === "FIELDSET" ? control.querySelector("input") : control).focus();
  return true;
}

form.addEventListener("input", showCount);
form.addEventListener("change", showCount);

$("text-file").addEventListener("change", async () => {
  const picker = $("text-file");
  const file = picker.files[0];
  picker.value = ""; // the same file can be opened again
  if (!file) return;
  clearErrors(form, formError);
  const most = 4 * (maxChars ?? 20000); // UTF-8 takes at most 4 bytes a character
  if (file.size > most) {
    showNextTo($("text"), `${file.name} is ${file.size.toLocaleString("en")} bytes: more text than the server takes`
      + ` (${(maxChars ?? 20000).toLocaleString("en")} characters)`);
    return;
  }
  try {
    $("text").value = (await file.text()).replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
  } catch (error) {
    showNextTo($("text"), `${file.name} could not be read: ${error.message}`);
    return;
  }
  $("text").dispatchEvent(new Event("input", { bubbles: true }));
  progress.textContent = `Opened ${file.name}.`;
  $("text").focus();
});

$("use-script").addEventListener("click", () => {
  const box = $("script");
  clearErrors($("script-box"));
  try {
    const script = dialogue.useScript(box.value);
    $("script-box").open = false;
    progress.textContent = `Script read: ${script.lines.length} lines, ${script.speakers.length} speakers.`;
    showCount();
    $("speaker-0-name").focus();
  } catch (error) {
    if (!(error instanceof dialogue.DialogueError)) throw error;
    showNextTo(box, error.message);
    box.focus();
  }
});

for (const radio of form.querySelectorAll("input[name=mode]")) radio.addEventListener("change", showMode);

// -- scene presets ----------------------------------------------------------------------------------------------

const SCENES = [
  ["default", "Quiet room (default)", ""],
  ["none", "No scene", ""],
  ["studio", "Recording studio", "Audio is recorded in a professional studio with a close microphone and no background noise."],
  ["audiobook", "Audiobook narration", "An audiobook narrated in a quiet studio; calm, clear and unhurried."],
  ["podcast", "Podcast conversation", "A relaxed podcast conversation recorded in a small, treated room."],
  ["phone", "Phone call", "Audio is recorded over a phone line: narrow, slightly compressed, with faint line noise."],
  ["hall", "Large hall", "Audio is recorded in a large empty hall with a long, soft echo."],
  ["outdoors", "Outdoors", "Audio is recorded outdoors on a breezy day, with birds far away."],
  ["custom", "Custom (type below)", null],
];
const scenePreset = $("scene-preset");
const sceneText = $("scene");
for (const [value, label] of SCENES) scenePreset.append(new Option(label, value));

scenePreset.addEventListener("change", () => {
  const preset = SCENES.find(([value]) => value === scenePreset.value);
  if (preset[2] !== null) sceneText.value = preset[2];
  if (scenePreset.value === "custom") sceneText.focus();
});
sceneText.addEventListener("input", () => {
  const preset = SCENES.find(([value]) => value === scenePreset.value);
  if (preset[2] !== sceneText.value) scenePreset.value = sceneText.value ? "custom" : "default";
});

// -- playback mode ----------------------------------------------------------------------------------------------

function showDelivery() {
  const stream = $("delivery").value === "stream";
  $("timestamps").disabled = !stream; // word times come in the stream's events
  $("captions").disabled = !stream; // likewise the captions
}

/** Shows the speech recognition options that this server's speech route accepts. */
function showRecognition(fields) {
  const offered = { timestamps: "timestamps-field", verify: "verify-field", captions: "captions-field" };
  let any = false;
  for (const [field, id] of Object.entries(offered)) {
    $(id).hidden = !fields.has(field);
    any ||= fields.has(field);
  }
  $("recognition").hidden = !any;
}

$("delivery").addEventListener("change", showDelivery);

// -- advanced settings ------------------------------------------------------------------------------------------

const NUMBERS = [
  ["temperature", "temperature"], ["top-p", "top_p"], ["top-k", "top_k"], ["max-new-tokens", "max_new_tokens"],
  ["chunk-words", "chunk_max_word_num"], ["speed", "speed"],
];
const ADVANCED = ["temperature", "top-p", "top-k", "seed", "max-new-tokens", "chunk-method", "chunk-words", "speed"];

$("reset-advanced").addEventListener("click", () => {
  for (const id of ADVANCED) {
    const control = $(id);
    control.value = control.dataset.default ?? "";
    control.dispatchEvent(new Event("change", { bubbles: true }));
  }
  $("timestamps").checked = false;
  $("verify").checked = false;
  $("captions").value = "";
});

/** The request body from the form; only settings that differ from their defaults are sent. */
function requestBody() {
  const body = { model: MODEL };
  if (mode() === "single") {
    body.input = $("text").value;
    body.voice = $("voice").value || "default";
    const description = $("describe").value.trim();
    if (description) body.speaker_descriptions = { SPEAKER0: description };
  } else {
    Object.assign(body, dialogue.requestFields());
  }
  const scene = sceneText.value.trim();
  if (scene) body.scene_prompt = scene;
  else if (scenePreset.value === "none") body.scene_prompt = "";
  for (const [id, field] of NUMBERS) {
    const control = $(id);
    const raw = control.value.trim();
    if (raw === "" && control.validity.badInput) {
      body[field] = control.value; // let the server name the field
    } else if (raw !== "" && Number(raw) !== Number(control.dataset.default)) {
      body[field] = Number(raw);
    }
  }
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = /^\d+$/.test(seed) ? BigInt(seed) : Number(seed); // exact up to 2^63
  if ($("chunk-method").value !== "auto") body.chunk_method = $("chunk-method").value;
  const saveAs = $("save-as").value.trim();
  if (saveAs) body.save_voice = saveAs;
  if (!$("recognition").hidden) {
    if ($("timestamps").checked && !$("timestamps").disabled) body.timestamps = "word";
    if ($("verify").checked) body.verify = true;
    if ($("captions").value) body.captions = $("captions").value;
  }
  return body;
}

/** Everything the form holds, to give a take "again with this seed". */
function formState() {
  const values = {};
  for (const id of ["text", "voice", "describe", "scene-preset", "scene", "delivery", "format", "captions", ...ADVANCED]) {
    values[id] = $(id).value;
  }
  const checks = { timestamps: $("timestamps").checked, verify: $("verify").checked };
  return { mode: mode(), values, checks, dialogue: dialogue.snapshot() };
}

function restoreForm(state) {
  form.querySelector(`input[name=mode][value=${state.mode}]`).checked = true;
  showMode();
  for (const [id, value] of Object.entries(state.values)) {
    const control = $(id);
    if (control.tagName === "SELECT" && ![...control.options].some((o) => o.value === value)) {
      control.append(new Option(value, value));
    }
    control.value = value;
  }
  for (const [id, checked] of Object.entries(state.checks)) $(id).checked = checked;
  dialogue.restore(state.dialogue);
  showDelivery();
}

/** The non-text settings a take shows. */
function settingsOf(body) {
  const skip = new Set(["model", "input", "voice", "stream_format", "response_format"]);
  return Object.fromEntries(Object.entries(body).filter(([k]) => !skip.has(k)));
}

// -- generating -------------------------------------------------------------------------------------------------

let running = null; // the generation in flight: {controller}
let playing = null; // the StreamPlayer of the latest streamed take, while its audio is heard
const liveWords = $("now-words");

function updateStop() {
  stopButton.disabled = !running && !(playing && playing.playing());
  if (!running && playing && playing.playing()) setTimeout(updateStop, 250);
}

/** Stops the generation in flight (its take keeps the audio that came) and the audio being heard. */
function stopAll() {
  if (running) running.controller.abort();
  if (playing) playing.stop();
  progress.textContent = "Stopped.";
  updateStop();
}

stopButton.addEventListener("click", stopAll);
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || document.querySelector("dialog[open]")) return;
  if (running || (playing && playing.playing())) {
    event.preventDefault();
    stopAll();
  }
});

function newTake(body, state) {
  const single = mode() === "single";
  const voiceLabel = single
    ? (body.voice === "default" ? (body.speaker_descriptions ? "described voice" : "model's choice") : body.voice)
    : `dialogue (${dialogue.summary()})`;
  return addTake({
    text: body.input, voiceLabel, state, settings: settingsOf(body), keepable: single, words: [],
    seed: body.seed ?? null,
  }, { again, keep });
}

/**
 * Streams over SSE and plays each piece through Web Audio as it arrives: PCM as it is (the take becomes a WAV
 * file), any other format decoded as it comes (the take is the file the server encoded). Stopped or cut short,
 * the take keeps the audio that came.
 */
async function streamed(body, state, ctx, controller) {
  const format = $("format").value;
  const pcm = format === "wav";
  body.response_format = pcm ? "pcm" : format;
  body.stream_format = "sse";
  const t0 = performance.now();
  const response = await call("v1/audio/speech", { method: "POST", json: body, signal: controller.signal });
  const take = newTake(body, state);
  if (playing) playing.stop();
  const player = new StreamPlayer(ctx);
  playing = player;
  const encoded = pcm ? null : new EncodedStream(player, MEDIA_TYPES[format]);
  let received = 0;
  take.extension = format;
  progress.textContent = "Generating… waiting for the first audio.";
  hideChunks();
  liveWords.replaceChildren();
  $("now").hidden = true;
  const live = highlighter(liveWords, take.words, () => player.position());
  let done = null;
  let buffer = "";
  const handle = (raw) => {
    const data = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
    if (!data) return;
    const event = JSON.parse(data);
    if (event.type === "speech.audio.delta") {
      if (take.firstAudio === undefined) {
        take.firstAudio = (performance.now() - t0) / 1000;
        live.start();
      }
      const bytes = base64Bytes(event.audio);
      received += bytes.length;
      if (encoded) encoded.push(bytes);
      else player.push(bytes);
      take.pieces = (take.pieces || 0) + 1;
      const amount = pcm ? `${player.duration.toFixed(1)} s` : `${(received / 1000).toFixed(0)} kB of ${format}`;
      progress.textContent = `${showChunks(event)}Playing while it is generated: first audio after `
        + `${take.firstAudio.toFixed(2)} s, ${amount} received.`;
    } else if (event.type === "speech.audio.words") {
      addWords(take.words, event.words);
      live.update();
      $("now").hidden = !take.words.length;
    } else if (event.type === "speech.audio.done") {
      done = event;
      const seed = /"seed":\s*(\d+)/.exec(data); // as text: JSON numbers lose digits past 2^53
      if (seed) done.seed = seed[1];
      addWords(take.words, event.words);
      live.update();
      $("now").hidden = !take.words.length;
    } else if (event.type === "error") {
      throw new Error(typeof event.error === "string" ? event.error : event.error?.message || "generation failed");
    }
  };
  /** A take cut short keeps what came: stopped by the user, or an error after the first audio. */
  const cutShort = async (error) => {
    hideChunks();
    live.stop();
    if (encoded) await encoded.finish(); // (the player is stopped or done: this only measures the audio)
    take.total = (performance.now() - t0) / 1000;
    take.duration = player.duration;
    const stopped = error.name === "AbortError";
    if (player.duration > 0) {
      take.blob = encoded ? await encoded.file() : player.wav();
      take.status = stopped ? "stopped" : "failed";
      take.message = stopped ? undefined : error.message;
      finish(take);
    } else {
      fail(take, stopped ? "Stopped before any audio came." : `Failed: ${error.message}`);
    }
  };
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        handle(raw);
      }
    }
    if (!done) throw new Error("the stream ended before the audio was complete; the server log has the reason");
  } catch (error) {
    await cutShort(error);
    throw error;
  }
  hideChunks();
  if (encoded) await encoded.finish();
  take.total = (performance.now() - t0) / 1000;
  take.duration = done.duration_s ?? player.duration;
  take.rtf = take.duration > 0 ? take.total / take.duration : undefined;
  take.seed = done.seed ?? take.seed;
  take.truncated = Boolean(done.truncated);
  take.savedVoice = done.saved_voice || null;
  take.saveError = done.save_voice_error || null;
  take.captions = done.captions || null;
  take.quality = done.quality || null;
  take.blob = encoded ? await encoded.file() : player.wav();
  finish(take);
  progress.textContent = `Done: ${take.duration.toFixed(2)} s of audio, first audio after `
    + `${take.firstAudio?.toFixed(2) ?? "–"} s, real-time factor ${take.rtf?.toFixed(2) ?? "–"}.`;
  // the live highlight runs until the queued audio has been heard
  const until = () => (player.playing() ? setTimeout(until, 200) : live.stop());
  until();
  return take;
}

/** Waits for the whole file in the chosen format, then plays it. */
async function whole(body, state, controller) {
  const format = $("format").value;
  body.response_format = format;
  const t0 = performance.now();
  progress.textContent = `Generating the whole ${format} file…`;
  // the seconds waited so far, for the eye only (a live region read out every second would drown a screen reader)
  const clock = document.createElement("span");
  clock.id = "waited";
  clock.setAttribute("aria-hidden", "true");
  progress.append(clock);
  const ticker = setInterval(() => { clock.textContent = ` ${Math.floor((performance.now() - t0) / 1000)} s`; }, 1000);
  let response, take;
  try {
    response = await call("v1/audio/speech", { method: "POST", json: body, signal: controller.signal });
    take = newTake(body, state);
    take.extension = format;
    try {
      take.blob = new Blob([await response.blob()], { type: MEDIA_TYPES[format] });
    } catch (error) {
      fail(take, error.name === "AbortError" ? "Stopped before the end." : `Failed: ${error.message}`);
      throw error;
    }
  } finally {
    clearInterval(ticker);
    clock.remove();
  }
  take.total = (performance.now() - t0) / 1000;
  take.firstAudio = take.total;
  take.duration = Number(response.headers.get("X-Audio-Duration"));
  take.rtf = take.duration > 0 ? take.total / take.duration : undefined;
  const seed = response.headers.get("X-Seed");
  take.seed = seed === null ? take.seed : seed;
  take.truncated = response.headers.get("X-Higgs-Truncated") === "true";
  take.savedVoice = response.headers.get("X-Higgs-Saved-Voice");
  const quality = response.headers.get("X-Higgs-Quality");
  if (quality) take.quality = { passed: quality.startsWith("passed") };
  take.saveError = response.headers.get("X-Higgs-Save-Voice-Error");
  finish(take);
  progress.textContent = `Done: ${take.duration.toFixed(2)} s of audio in ${take.total.toFixed(2)} s, real-time `
    + `factor ${take.rtf?.toFixed(2) ?? "–"}.`;
  take.element.querySelector("audio").play().catch(() => {});
  return take;
}

async function generate() {
  if (running) return;
  clearErrors(form, formError);
  if (overLimit()) return;
  let body;
  try {
    body = requestBody();
  } catch (error) {
    if (error instanceof dialogue.DialogueError) {
      const control = $(error.controlId);
      showNextTo(control, error.message);
      control.focus();
      return;
    }
    throw error;
  }
  const state = formState();
  const stream = $("delivery").value === "stream";
  const ctx = stream ? audioContext() : null; // created in the click, so the browser lets it play
  const controller = new AbortController();
  running = { controller };
  generateButton.disabled = true;
  generateButton.setAttribute("aria-busy", "true");
  updateStop();
  try {
    const take = stream ? await streamed(body, state, ctx, controller) : await whole(body, state, controller);
    if (take.savedVoice) {
      $("save-as").value = "";
      await loadVoices();
    }
    if (take.saveError) showNextTo($("save-as"), take.saveError.replace(/^save_voice: /, ""));
  } catch (error) {
    if (error.name === "AbortError") {
      progress.textContent = "Stopped.";
    } else if (error instanceof ApiError) {
      progress.textContent = "";
      if (error.status === 503) error.message = `The server cannot generate now: ${error.message}`;
      showError(form, error, formError);
      pollHealth();
    } else {
      progress.textContent = "";
      formError.textContent = `Generation failed: ${error.message}`;
      formError.hidden = false;
    }
  } finally {
    running = null;
    generateButton.disabled = false;
    generateButton.setAttribute("aria-busy", "false");
    updateStop();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  generate();
});
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  }
});
clearOnEdit(form);

function again(take) {
  restoreForm(take.state);
  $("seed").value = String(take.seed);
  $("save-as").value = "";
  generateButton.focus();
  generate();
}

async function keep(take, name) {
  await uploadVoice(name, take.blob, take.text, `take-${take.n}.${take.extension}`);
  await loadVoices();
}

// -- voices in the pickers --------------------------------------------------------------------------------------

onVoices((voices) => {
  const picker = $("voice");
  const chosen = picker.value;
  picker.replaceChildren(new Option("Model's choice (default)", "default"));
  for (const [kind, label] of [["preset", "Presets"], ["upload", "Uploaded"], ["alias", "Other names"]]) {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const v of voices.filter((x) => x.kind === kind || (kind === "upload" && !["preset", "alias"].includes(x.kind)))) {
      const what = kind === "alias" ? `→ ${v.voice || "the model's voice"}` : `${Number(v.duration_s).toFixed(1)} s`;
      group.append(new Option(`${v.name} (${what})`, v.name));
    }
    if (group.children.length) picker.append(group);
  }
  picker.value = [...picker.options].some((o) => o.value === chosen) ? chosen : "default";
  dialogue.setVoices(voices);
});

// -- server state -----------------------------------------------------------------------------------------------

let healthTimer = 0;

async function pollHealth() {
  clearTimeout(healthTimer);
  const box = $("server-state");
  try {
    const response = await fetch("health", { cache: "no-store" });
    const health = await response.json();
    const model = health.model || {};
    const jobs = health.jobs || {};
    const state = model.state || "unknown";
    const words = {
      ready: "Model ready", loading: "Model loading…", not_loaded: "Model loads on the first request",
      failed: `Model failed: ${model.error || "see the server log"}`,
    };
    $("model-state").textContent = model.download ? downloadText(model.download) : words[state] || `Model: ${state}`;
    const bar = $("download-bar");
    bar.hidden = !model.download?.bytes;
    if (model.download?.bytes) bar.value = model.download.bytes_done / model.download.bytes;
    box.dataset.download = String(Boolean(model.download));
    $("demo-note").hidden = !model.demo;
    if (Number.isInteger(health.limits?.max_text_chars) && health.limits.max_text_chars !== maxChars) {
      maxChars = health.limits.max_text_chars;
      showCount();
    }
    const waiting = (jobs.inQueue || 0) + (model.waiting || 0);
    const generating = model.decoding ?? jobs.inProgress ?? 0;
    $("queue-state").textContent = `· queue ${waiting} waiting, ${generating} generating`;
    box.dataset.state = state;
    box.dataset.queue = String(waiting);
  } catch {
    $("model-state").textContent = "Server unreachable";
    $("queue-state").textContent = "";
    box.dataset.state = "unreachable";
  }
  const downloading = box.dataset.download === "true";
  healthTimer = setTimeout(pollHealth, document.hidden ? 15000 : downloading ? 1500 : 3000);
}

function sizeText(bytes) {
  const units = ["B", "kB", "MB", "GB"];
  let n = bytes;
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) {
    n /= 1000;
    unit += 1;
  }
  return unit ? `${n.toFixed(1)} ${units[unit]}` : `${n} B`;
}

function leftText(seconds) {
  if (!Number.isFinite(seconds)) return "time left unknown";
  if (seconds < 60) return `${Math.round(seconds)} s left`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s left`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")} min left`;
}

/** The model download's progress, from /health while the model is not ready. */
function downloadText(d) {
  if (d.waiting) return `Model download: ${d.repo}: ${d.waiting}`;
  const percent = d.bytes ? Math.floor((100 * d.bytes_done) / d.bytes) : 0;
  const file = d.files_done < d.files ? ` · file ${d.files_done + 1} of ${d.files}` : "";
  const rate = Number.isFinite(d.rate_bytes_s) ? ` · ${sizeText(d.rate_bytes_s)}/s` : "";
  return `Downloading the model: ${sizeText(d.bytes_done)} of ${sizeText(d.bytes)} (${percent}%)${file}${rate}`
    + ` · ${leftText(d.eta_s)}`;
}

// -- the API key ------------------------------------------------------------------------------------------------

const keyButton = $("key-button");
function showKeyButton(key) {
  keyButton.hidden = !key && !needsKey();
  keyButton.textContent = key ? "Change API key" : "Enter API key";
}
keyButton.addEventListener("click", async () => {
  if (await askKey()) {
    await loadVoices();
    const caps = await capabilities();
    setCapabilities(caps);
    showRecognition(caps.fields);
  }
});
onKeyChange(showKeyButton);
showKeyButton(storedKey());

// -- start ------------------------------------------------------------------------------------------------------

showMode();
showDelivery();
pollHealth();
await restoreTakes({ again, keep });
await loadVoices();
const caps = await capabilities();
setCapabilities(caps);
showRecognition(caps.fields);
document.body.dataset.ready = "true";
