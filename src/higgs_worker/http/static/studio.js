// The studio page: the speak form, streamed or whole-file generation, takes, server state. Plain ES modules, no
// build step; every request goes through the public API (`POST /v1/audio/speech`, `/v1/audio/voices`, `/health`).

import { ApiError, askKey, call, capabilities, needsKey, onKeyChange, storedKey } from "./api.js";
import { audioContext, base64Bytes, MEDIA_TYPES, StreamPlayer } from "./audio.js";
import * as dialogue from "./dialogue.js";
import { clearErrors, clearOnEdit, showError, showNextTo } from "./errors.js";
import { addTake, fail, finish } from "./takes.js";
import { loadVoices, onVoices, setCapabilities, uploadVoice } from "./voices.js";
import { addWords, highlighter } from "./words.js";

const $ = (id) => document.getElementById(id);
const form = $("speak");
const formError = $("form-error");
const progress = $("progress");
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
}

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
  $("format").disabled = stream;
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

stopButton.addEventListener("click", () => {
  if (running) running.controller.abort();
  if (playing) playing.stop();
  progress.textContent = "Stopped.";
  updateStop();
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

/** Streams PCM over SSE into Web Audio: playback starts with the first piece. */
async function streamed(body, state, ctx, controller) {
  body.response_format = "pcm";
  body.stream_format = "sse";
  const t0 = performance.now();
  const response = await call("v1/audio/speech", { method: "POST", json: body, signal: controller.signal });
  const take = newTake(body, state);
  if (playing) playing.stop();
  const player = new StreamPlayer(ctx);
  playing = player;
  take.extension = "wav";
  progress.textContent = "Generating… waiting for the first audio.";
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
      player.push(base64Bytes(event.audio));
      take.pieces = (take.pieces || 0) + 1;
      progress.textContent = `Playing while it is generated: first audio after ${take.firstAudio.toFixed(2)} s, `
        + `${player.duration.toFixed(1)} s received.`;
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
  } catch (error) {
    take.blob = player.samples ? player.wav() : null;
    take.duration = player.duration;
    fail(take, error.name === "AbortError" ? "Stopped before the end." : `Failed: ${error.message}`);
    live.stop();
    throw error;
  }
  if (!done) {
    fail(take, "The stream ended early; the server log has the reason.");
    live.stop();
    throw new Error("the stream ended before the audio was complete");
  }
  take.total = (performance.now() - t0) / 1000;
  take.duration = done.duration_s ?? player.duration;
  take.rtf = take.duration > 0 ? take.total / take.duration : undefined;
  take.seed = done.seed ?? take.seed;
  take.truncated = Boolean(done.truncated);
  take.savedVoice = done.saved_voice || null;
  take.saveError = done.save_voice_error || null;
  take.captions = done.captions || null;
  take.quality = done.quality || null;
  take.blob = player.wav();
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
  const response = await call("v1/audio/speech", { method: "POST", json: body, signal: controller.signal });
  const take = newTake(body, state);
  take.extension = format;
  try {
    take.blob = new Blob([await response.blob()], { type: MEDIA_TYPES[format] });
  } catch (error) {
    fail(take, error.name === "AbortError" ? "Stopped before the end." : `Failed: ${error.message}`);
    throw error;
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
  for (const [kind, label] of [["preset", "Presets"], ["upload", "Uploaded"]]) {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const v of voices.filter((x) => (kind === "preset" ? x.kind === "preset" : x.kind !== "preset"))) {
      group.append(new Option(`${v.name} (${Number(v.duration_s).toFixed(1)} s)`, v.name));
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
    $("model-state").textContent = words[state] || `Model: ${state}`;
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
  healthTimer = setTimeout(pollHealth, document.hidden ? 15000 : 3000);
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
await loadVoices();
const caps = await capabilities();
setCapabilities(caps);
showRecognition(caps.fields);
document.body.dataset.ready = "true";
