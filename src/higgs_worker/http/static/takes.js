// Takes: every generation with its text, voice, seed, settings, duration and timings, to play, download, run
// "again with this seed", "keep this voice" (the take's audio and text uploaded to the library), or delete. Takes
// with audio are kept in this browser (store.js), so they are still here after a reload.

import { clearErrors, showError, showNextTo } from "./errors.js";
import { deleteAllTakes, deleteTake, loadTakes, saveTake } from "./store.js";
import { highlighter } from "./words.js";

const listBox = document.getElementById("take-list");
const note = document.getElementById("takes-note");
const deleteAll = document.getElementById("delete-takes");
const template = document.getElementById("take-template");

const takes = [];

/** What a take keeps across reloads (everything but its page elements). */
const KEPT = ["n", "created", "text", "voiceLabel", "state", "settings", "keepable", "words", "seed", "duration",
  "firstAudio", "total", "rtf", "pieces", "truncated", "savedVoice", "quality", "captions", "extension", "blob",
  "status", "message"];

function seconds(value, digits = 2) {
  return Number.isFinite(value) ? `${value.toFixed(digits)} s` : "–";
}

/** The facts line of a take: duration, time to first audio, real-time factor. */
export function facts(take) {
  const parts = [`${seconds(take.duration)} of audio`];
  if (take.status === "stopped") parts.push("stopped before the end");
  if (take.status === "failed") parts.push(`cut short: ${take.message || "failed"}`);
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

function showNote() {
  deleteAll.hidden = takes.length === 0;
  if (!note.dataset.problem) {
    note.textContent = takes.length
      ? "Kept in this browser, also after a reload, until you delete them."
      : "Every generation is kept here, in this browser, also after a reload.";
  }
}

/** Two presses: the first arms the button, so a stray key press deletes nothing. */
function armed(button, label, armedLabel) {
  if (button.dataset.armed === "yes") return true;
  button.dataset.armed = "yes";
  const was = button.textContent;
  button.textContent = "Press again to delete";
  button.setAttribute("aria-label", armedLabel);
  setTimeout(() => {
    if (button.isConnected) {
      button.dataset.armed = "";
      button.textContent = was;
      button.setAttribute("aria-label", label);
    }
  }, 5000);
  return false;
}

async function remove(take) {
  // the store first, the page after: what the page shows is what a reload finds
  try {
    await deleteTake(take.n);
  } catch (error) {
    problem(`The take could not be deleted from this browser: ${error.message}`);
    return;
  }
  const i = takes.indexOf(take);
  if (i >= 0) takes.splice(i, 1);
  take.element.remove();
  if (take.url) URL.revokeObjectURL(take.url);
  showNote();
}

function problem(message) {
  note.dataset.problem = "yes";
  note.textContent = message;
}

deleteAll.addEventListener("click", async () => {
  if (!armed(deleteAll, "Delete all takes", "Press again to delete all takes")) return;
  deleteAll.dataset.armed = "";
  deleteAll.textContent = "Delete all takes";
  deleteAll.setAttribute("aria-label", "Delete all takes");
  try {
    await deleteAllTakes(); // the store first, the page after: what the page shows is what a reload finds
  } catch (error) {
    problem(`The takes could not be deleted from this browser: ${error.message}`);
    return;
  }
  for (const take of [...takes]) {
    take.element.remove();
    if (take.url) URL.revokeObjectURL(take.url);
  }
  takes.length = 0;
  showNote();
});

/**
 * Adds a take to the history and returns it; `actions.again(take)` and `actions.keep(take, name)` are what its
 * buttons do. The take's audio (blob) may come later: call `finish(take)` once it is complete (or cut short).
 */
export function addTake(take, actions) {
  take.n ??= takes.reduce((most, t) => Math.max(most, t.n), 0) + 1;
  take.created ??= Date.now();
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
  const del = li.querySelector(".delete");
  del.setAttribute("aria-label", `Delete take ${take.n}`);
  del.hidden = true;
  del.addEventListener("click", () => {
    if (armed(del, `Delete take ${take.n}`, `Press again to delete take ${take.n}`)) remove(take);
  });
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
      take.savedVoice = name;
      showKept(take);
      persist(take);
    } catch (error) {
      showError(keepForm, error, keepError);
    } finally {
      button.disabled = false;
    }
  });
  take.element = li;
  take.wordsBox = li.querySelector(".take-words");
  take.words = take.words || [];
  // newest first: before the first take with a lower number (restored takes come oldest first)
  const after = [...listBox.children].find((el) => Number(el.id.slice(5)) < take.n);
  listBox.insertBefore(li, after || null);
  showNote();
  return take;
}

function showKept(take) {
  const keep = take.element.querySelector(".keep");
  if (take.savedVoice) {
    keep.hidden = false;
    keep.textContent = `Kept as ${take.savedVoice}`;
    keep.disabled = true;
  }
}

/** Keeps the take in this browser; says so on the take when the browser refuses (no room, private mode...). */
async function persist(take) {
  if (!takes.includes(take)) return; // deleted while it was still being made: nothing to keep
  const record = Object.fromEntries(KEPT.filter((k) => take[k] !== undefined).map((k) => [k, take[k]]));
  if (record.seed !== undefined && record.seed !== null) record.seed = String(record.seed);
  try {
    await saveTake(record);
    take.element.dataset.kept = "true";
  } catch (error) {
    take.element.dataset.kept = "false";
    take.element.querySelector(".take-settings").textContent += ` · not kept after a reload: ${error.message}`;
  }
}

/**
 * Shows a take that has its audio: the audio, facts, download, the buttons that need the seed; then keeps it in
 * this browser (unless `save` is false: a take read back from there). A take cut short (`status` "stopped" or
 * "failed") keeps the audio it has.
 */
export function finish(take, { save = true } = {}) {
  const li = take.element;
  li.classList.toggle("stopped", take.status === "stopped");
  li.classList.toggle("failed", take.status === "failed");
  li.querySelector(".take-facts").textContent = `seed ${take.seed ?? "?"} · ${facts(take)}`;
  li.querySelector(".take-settings").textContent = settingsLine(take);
  li.dataset.seed = String(take.seed ?? "");
  li.dataset.duration = String(take.duration ?? "");
  li.dataset.status = take.status || "done";
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
  li.querySelector(".delete").hidden = false;
  const keep = li.querySelector(".keep");
  keep.hidden = !take.keepable || !take.blob;
  showKept(take);
  if (take.words.length) {
    const marker = highlighter(take.wordsBox, take.words, () => audio.currentTime);
    audio.addEventListener("play", () => marker.start());
    audio.addEventListener("pause", () => marker.stop());
    audio.addEventListener("ended", () => marker.stop());
  }
  if (save && take.blob) persist(take);
  else if (!save) li.dataset.kept = "true";
}

/** Marks a take that ended without audio (an error, or stopped before any arrived); it is not kept. */
export function fail(take, message) {
  const li = take.element;
  li.classList.add("failed");
  li.dataset.status = "failed";
  li.querySelector(".take-settings").textContent = message;
  li.querySelector(".again").disabled = true;
  li.querySelector(".delete").hidden = false;
}

/** Shows the takes kept in this browser (call once, at start). */
export async function restoreTakes(actions) {
  let records;
  try {
    records = await loadTakes();
  } catch (error) {
    problem(`Takes are kept only while this page is open: ${error.message}`);
    return [];
  }
  for (const record of records) finish(addTake({ ...record, words: record.words || [] }, actions), { save: false });
  return records;
}

export function all() {
  return takes;
}
