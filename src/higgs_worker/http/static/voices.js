// The voice library: presets and uploads with a play button each, adding a voice from a file or the microphone
// (with its transcript typed, or filled in when the server offers speech recognition), deleting uploads.

import { ApiError, call, getJSON } from "./api.js";
import { toWav } from "./audio.js";
import { clearErrors, clearOnEdit, showError, showNextTo } from "./errors.js";

const list = document.getElementById("voice-list");
const status = document.getElementById("voices-status");
const form = document.getElementById("add-voice");
const formError = document.getElementById("voice-form-error");
const nameInput = document.getElementById("voice-name");
const fileInput = document.getElementById("voice-file");
const transcriptInput = document.getElementById("voice-transcript");
const recordButton = document.getElementById("record");
const recordState = document.getElementById("record-state");
const recordingAudio = document.getElementById("recording");
const fillButton = document.getElementById("fill-transcript");

const listeners = [];
const localAudio = new Map(); // voice name -> object URL of audio this tab has (uploaded, recorded, kept)
const samples = new Map(); // voice name -> object URL of a generated sample, when the reference cannot be fetched
let caps = { transcribe: false, voiceAudio: false };
let voices = [];
let recorded = null; // a WAV Blob from the microphone
const player = new Audio();
let playingButton = null;

export function onVoices(listener) {
  listeners.push(listener);
}

export function setCapabilities(next) {
  caps = { ...caps, ...next };
  fillButton.hidden = !caps.transcribe;
  render();
}

/** Remembers audio this tab has for a voice, so its play button plays the reference itself. */
export function rememberAudio(name, blob) {
  localAudio.set(name, URL.createObjectURL(blob));
}

/** Fetches the library again and tells every picker. */
export async function loadVoices() {
  try {
    const body = await getJSON("v1/audio/voices");
    voices = body.data || [];
    const presets = voices.filter((v) => v.kind === "preset").length;
    const uploads = voices.filter((v) => v.kind === "upload").length;
    const aliases = voices.length - presets - uploads;
    status.textContent = presets + uploads
      ? `${presets + uploads} voices: ${presets} presets, ${uploads} uploaded`
        + `${aliases ? `; ${aliases} aliases (OpenAI's voice names, and the operator's)` : ""}.`
      : "No voices yet: add one below, or let the model choose.";
  } catch (error) {
    status.textContent = `The voice library is not available: ${error.message}`;
  }
  render();
  listeners.forEach((f) => f(voices));
  return voices;
}

function stopPlaying() {
  player.pause();
  if (playingButton) {
    playingButton.textContent = "Play";
    playingButton.setAttribute("aria-pressed", "false");
  }
  playingButton = null;
}

player.addEventListener("ended", stopPlaying);

async function referenceURL(voice) {
  if (voice.kind === "alias") return referenceURL(voices.find((v) => v.name === voice.voice) || { name: voice.voice });
  if (localAudio.has(voice.name)) return localAudio.get(voice.name);
  if (caps.voiceAudio || !samples.has(voice.name)) {
    // the reference recording itself; a server without that route (404) gets a sample spoken in the voice
    try {
      const response = await call(`v1/audio/voices/${encodeURIComponent(voice.name)}/audio`);
      const url = URL.createObjectURL(await response.blob());
      localAudio.set(voice.name, url);
      return url;
    } catch (error) {
      if (caps.voiceAudio || !(error instanceof ApiError) || error.status !== 404) throw error;
    }
  }
  if (!samples.has(voice.name)) {
    // The server offers no download of the reference: a short sample in the voice stands in for it.
    const response = await call("v1/audio/speech", {
      method: "POST",
      json: { model: "higgs-audio-v2", input: `This is the voice called ${voice.name.replace(/[_-]+/g, " ")}.`,
        voice: voice.name, response_format: "mp3", max_new_tokens: 400 },
    });
    samples.set(voice.name, URL.createObjectURL(await response.blob()));
  }
  return samples.get(voice.name);
}

async function play(voice, button) {
  if (playingButton === button) {
    stopPlaying();
    return;
  }
  stopPlaying();
  playingButton = button;
  button.textContent = "Loading…";
  button.setAttribute("aria-pressed", "true");
  try {
    player.src = await referenceURL(voice);
    if (playingButton !== button) return;
    button.textContent = "Stop";
    await player.play();
  } catch (error) {
    stopPlaying();
    status.textContent = `Could not play ${voice.name}: ${error.message}`;
  }
}

function canHearReference(voice) {
  return localAudio.has(voice.kind === "alias" ? voice.voice : voice.name) || caps.voiceAudio;
}

async function remove(voice, button) {
  if (button.dataset.armed !== "yes") {
    // Two presses: the first arms the button, so a stray key press deletes nothing.
    button.dataset.armed = "yes";
    button.textContent = "Press again to delete";
    button.setAttribute("aria-label", `Press again to delete ${voice.name}`);
    setTimeout(() => {
      if (button.isConnected) {
        button.dataset.armed = "";
        button.textContent = "Delete";
        button.setAttribute("aria-label", `Delete ${voice.name}`);
      }
    }, 5000);
    return;
  }
  try {
    await call(`v1/audio/voices/${encodeURIComponent(voice.name)}`, { method: "DELETE" });
    localAudio.delete(voice.name);
    samples.delete(voice.name);
    status.textContent = `Deleted ${voice.name}.`;
  } catch (error) {
    status.textContent = `Could not delete ${voice.name}: ${error.message}`;
  }
  await loadVoices();
}

function render() {
  list.replaceChildren();
  for (const voice of voices) {
    const li = document.createElement("li");
    li.className = "voice-item";
    li.dataset.voice = voice.name;
    const head = document.createElement("div");
    head.className = "voice-head";
    const name = document.createElement("strong");
    name.textContent = voice.name;
    const kind = document.createElement("span");
    kind.className = `badge ${voice.kind}`;
    kind.textContent = voice.kind;
    const length = document.createElement("span");
    length.className = "muted";
    if (voice.kind === "alias") {
      length.textContent = voice.voice ? `stands for ${voice.voice}` : "the model's own voice";
    } else {
      length.textContent = `${Number(voice.duration_s).toFixed(1)} s`;
    }
    head.append(name, " ", kind, " ", length);
    const transcript = document.createElement("p");
    transcript.className = "transcript muted";
    transcript.textContent = voice.kind === "alias" ? (voice.error || "") : voice.transcript;
    const actions = document.createElement("div");
    actions.className = "voice-actions";
    const playButton = document.createElement("button");
    playButton.type = "button";
    playButton.textContent = "Play";
    playButton.setAttribute("aria-pressed", "false");
    playButton.setAttribute("aria-label", canHearReference(voice) ? `Play ${voice.name}` : `Play a sample of ${voice.name}`);
    playButton.title = canHearReference(voice) ? "The reference recording" : "A short sample spoken in this voice";
    playButton.addEventListener("click", () => play(voice, playButton));
    playButton.hidden = voice.kind === "alias" && !voice.voice; // the model's own voice has no recording
    const use = document.createElement("button");
    use.type = "button";
    use.textContent = "Use";
    use.setAttribute("aria-label", `Use ${voice.name}`);
    use.addEventListener("click", () => {
      const picker = document.getElementById("voice");
      picker.value = voice.name;
      picker.dispatchEvent(new Event("change", { bubbles: true }));
      picker.focus();
    });
    actions.append(playButton, use);
    if (voice.kind === "upload") {
      const del = document.createElement("button");
      del.type = "button";
      del.className = "danger";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${voice.name}`);
      del.addEventListener("click", () => remove(voice, del));
      actions.append(del);
    }
    li.append(head, transcript, actions);
    list.append(li);
  }
}

/** POSTs a voice to the library; throws ApiError naming `name`, `audio` or `transcript` when refused. */
export async function uploadVoice(name, blob, transcript, filename = "voice.wav") {
  const body = new FormData();
  body.append("name", name);
  body.append("transcript", transcript);
  body.append("audio", blob, filename);
  const response = await call("v1/audio/voices", { method: "POST", form: body });
  rememberAudio(name, blob);
  return response.json();
}

// -- the microphone ------------------------------------------------------------------------------------------

let recorder = null;
let timer = 0;

function canRecord() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
}

async function startRecording() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    recordState.textContent = `No microphone: ${error.message}`;
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => event.data.size && chunks.push(event.data));
  recorder.addEventListener("stop", async () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(timer);
    recorder = null;
    recordButton.textContent = "Record again";
    recordButton.setAttribute("aria-pressed", "false");
    try {
      recorded = await toWav(new Blob(chunks, { type: chunks[0]?.type || "audio/webm" }));
    } catch (error) {
      recordState.textContent = `The recording could not be read: ${error.message}`;
      return;
    }
    recordingAudio.src = URL.createObjectURL(recorded);
    recordingAudio.hidden = false;
    recordState.textContent = "Recorded. It is used instead of a file.";
    if (caps.transcribe && !transcriptInput.value.trim()) fillTranscript();
  });
  const started = Date.now();
  recorder.start();
  recordButton.textContent = "Stop recording";
  recordButton.setAttribute("aria-pressed", "true");
  recordState.textContent = "Recording… 0 s";
  timer = setInterval(() => {
    recordState.textContent = `Recording… ${Math.round((Date.now() - started) / 1000)} s`;
  }, 500);
}

recordButton.addEventListener("click", () => {
  if (recorder) recorder.stop();
  else startRecording();
});

if (!canRecord()) {
  recordButton.disabled = true;
  recordState.textContent = "Recording needs a secure page (https or localhost) and a browser with MediaRecorder.";
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) {
    recorded = null;
    recordingAudio.hidden = true;
    recordState.textContent = "";
  }
});

/** Speech recognition on the server (when it has it) writes the transcript of the chosen audio. */
async function fillTranscript() {
  const audio = recorded || fileInput.files[0];
  if (!audio) {
    showNextTo(fileInput, "Choose a file or record first");
    return;
  }
  const body = new FormData();
  body.append("file", audio, audio.name || "recording.wav");
  body.append("model", "whisper-1");
  fillButton.disabled = true;
  const was = fillButton.textContent;
  fillButton.textContent = "Listening…";
  try {
    const result = await (await call("v1/audio/transcriptions", { method: "POST", form: body })).json();
    transcriptInput.value = (result.text || "").trim();
    transcriptInput.dispatchEvent(new Event("input", { bubbles: true }));
  } catch (error) {
    showNextTo(transcriptInput, `Speech recognition failed: ${error.message}`);
  } finally {
    fillButton.disabled = false;
    fillButton.textContent = was;
  }
}

fillButton.addEventListener("click", fillTranscript);

clearOnEdit(form);
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form, formError);
  const name = nameInput.value.trim();
  const audio = recorded || fileInput.files[0];
  const transcript = transcriptInput.value.trim();
  if (!name) showNextTo(nameInput, "Give the voice a name");
  if (!audio) showNextTo(fileInput, "Choose an audio file or record one");
  if (!transcript) showNextTo(transcriptInput, "Type exactly what the audio says");
  const missing = form.querySelector("[aria-invalid]");
  if (missing) {
    missing.focus();
    return;
  }
  const submit = document.getElementById("upload-voice");
  submit.disabled = true;
  try {
    const added = await uploadVoice(name, audio, transcript, audio.name || "recording.wav");
    status.textContent = `Added ${added.name} (${Number(added.duration_s).toFixed(1)} s).`;
    form.reset();
    recorded = null;
    recordingAudio.hidden = true;
    recordState.textContent = "";
    recordButton.textContent = "Record from microphone";
    await loadVoices();
    const picker = document.getElementById("voice");
    picker.value = added.name;
    picker.dispatchEvent(new Event("change", { bubbles: true }));
  } catch (error) {
    showError(form, error, formError);
  } finally {
    submit.disabled = false;
  }
});
