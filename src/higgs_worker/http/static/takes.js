// Takes: every generation kept in the page (text, voice, seed, settings, duration, timings) with play, download,
// "again with this seed", and "keep this voice" (the take's audio and text uploaded to the library).

import { clearErrors, showError, showNextTo } from "./errors.js";
import { highlighter } from "./words.js";

const listBox = document.getElementById("take-list");
const empty = document.getElementById("takes-empty");
const template = document.getElementById("take-template");

const takes = [];

function seconds(value, digits = 2) {
  return Number.isFinite(value) ? `${value.toFixed(digits)} s` : "–";
}

/** The facts line of a take: duration, time to first audio, real-time factor. */
export function facts(take) {
  const parts = [`${seconds(take.duration)} of audio`];
  if (Number.isFinite(take.firstAudio)) parts.push(`first audio after ${seconds(take.firstAudio)}`);
  if (Number.isFinite(take.total)) parts.push(`ready in ${seconds(take.total)}`);
  if (Number.isFinite(take.rtf)) parts.push(`real-time factor ${take.rtf.toFixed(2)}`);
  if (take.truncated) parts.push("truncated at max new tokens");
  if (take.quality && typeof take.quality.passed === "boolean") {
    parts.push(take.quality.passed ? "every chunk heard right" : "a chunk was misheard");
  }
  return parts.join(" · ");
}

function settingsLine(take) {
  const shown = Object.entries(take.settings).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return shown.length ? shown.join(" · ") : "default settings";
}

/**
 * Adds a take to the history and returns it; `actions.again(take)` and `actions.keep(take, name)` are what its
 * buttons do. The take's audio (blob) may come later: call `finish(take)` once it is complete.
 */
export function addTake(take, actions) {
  take.n = takes.length + 1;
  takes.push(take);
  const li = template.content.firstElementChild.cloneNode(true);
  li.id = `take-${take.n}`;
  li.setAttribute("aria-label", `Take ${take.n}`);
  li.querySelector(".take-title").textContent = `Take ${take.n} · ${take.voiceLabel}`;
  li.querySelector(".take-text").textContent = take.text;
  li.querySelector(".take-settings").textContent = "generating…";
  const audio = li.querySelector("audio");
  audio.hidden = true;
  audio.setAttribute("aria-label", `Take ${take.n} audio`);
  const download = li.querySelector(".download");
  download.hidden = true;
  const again = li.querySelector(".again");
  again.disabled = true;
  again.setAttribute("aria-label", `Again with this seed (take ${take.n})`);
  again.addEventListener("click", () => actions.again(take));
  const keep = li.querySelector(".keep");
  keep.hidden = true;
  keep.setAttribute("aria-label", `Keep this voice (take ${take.n})`);
  const keepForm = li.querySelector(".keep-form");
  const keepName = li.querySelector(".keep-name");
  keepName.id = `take-${take.n}-keep-name`;
  const keepError = keepForm.querySelector(".field-error");
  keep.addEventListener("click", () => {
    keepForm.hidden = !keepForm.hidden;
    keep.setAttribute("aria-expanded", String(!keepForm.hidden));
    if (!keepForm.hidden) keepName.focus();
  });
  keepForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(keepForm, keepError);
    const name = keepName.value.trim();
    if (!name) {
      showNextTo(keepName, "Give the voice a name");
      keepName.focus();
      return;
    }
    const button = keepForm.querySelector("button");
    button.disabled = true;
    try {
      await actions.keep(take, name);
      keepForm.hidden = true;
      keep.textContent = `Kept as ${name}`;
      keep.disabled = true;
    } catch (error) {
      showError(keepForm, error, keepError);
    } finally {
      button.disabled = false;
    }
  });
  take.element = li;
  take.wordsBox = li.querySelector(".take-words");
  take.words = take.words || [];
  listBox.prepend(li);
  empty.hidden = true;
  return take;
}

/** Shows a finished take: its audio, facts, download and the buttons that need the seed. */
export function finish(take) {
  const li = take.element;
  li.querySelector(".take-facts").textContent = `seed ${take.seed ?? "?"} · ${facts(take)}`;
  li.querySelector(".take-settings").textContent = settingsLine(take);
  li.dataset.seed = String(take.seed ?? "");
  li.dataset.duration = String(take.duration ?? "");
  if (Number.isFinite(take.firstAudio)) li.dataset.firstAudio = String(take.firstAudio);
  if (Number.isFinite(take.total)) li.dataset.total = String(take.total);
  if (take.pieces) li.dataset.pieces = String(take.pieces);
  const audio = li.querySelector("audio");
  if (take.blob) {
    take.url = URL.createObjectURL(take.blob);
    audio.src = take.url;
    audio.hidden = false;
    const download = li.querySelector(".download");
    download.href = take.url;
    download.download = `higgs-take-${take.n}-seed-${take.seed ?? "x"}.${take.extension}`;
    download.hidden = false;
    download.setAttribute("aria-label", `Download take ${take.n}`);
  }
  if (take.captions && take.captions.text) {
    const link = document.createElement("a");
    link.className = "button";
    link.textContent = "Captions";
    link.href = URL.createObjectURL(new Blob([take.captions.text], { type: "text/plain" }));
    link.download = `higgs-take-${take.n}.${take.captions.format || "txt"}`;
    link.setAttribute("aria-label", `Download captions of take ${take.n}`);
    li.querySelector(".download").after(link);
  }
  li.querySelector(".again").disabled = take.seed === undefined || take.seed === null;
  const keep = li.querySelector(".keep");
  keep.hidden = !take.keepable || !take.blob;
  if (take.savedVoice) {
    keep.hidden = false;
    keep.textContent = `Kept as ${take.savedVoice}`;
    keep.disabled = true;
  }
  if (take.words.length) {
    const marker = highlighter(take.wordsBox, take.words, () => audio.currentTime);
    audio.addEventListener("play", () => marker.start());
    audio.addEventListener("pause", () => marker.stop());
    audio.addEventListener("ended", () => marker.stop());
  }
}

/** Marks a take that did not finish (an error, or stopped by the user). */
export function fail(take, message) {
  const li = take.element;
  li.classList.add("failed");
  li.querySelector(".take-settings").textContent = message;
  li.querySelector(".again").disabled = true;
}

export function all() {
  return takes;
}
