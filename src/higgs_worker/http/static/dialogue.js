// Dialogue: lines, each said by a speaker; speakers, each with a name (for the page only), a library voice or a
// description (or neither: the model's choice). Sent as `[SPEAKERn] line` text, the voices in speaker order as a
// comma list, and the descriptions as `speaker_descriptions` ({"SPEAKER1": "masculine; deep"}). A pasted script
// (`Name: line` or `[SPEAKERn] line`, one a line) becomes the speakers and lines.

export const MAX_SPEAKERS = 8;

const speakerList = document.getElementById("speaker-list");
const lineList = document.getElementById("line-list");

let voices = [];
let speakers = [{ name: "", voice: "", description: "" }, { name: "", voice: "", description: "" }];
let lines = [
  { speaker: 0, text: "Did you hear that the studio can speak a dialogue now?" },
  { speaker: 1, text: "I did. Each of us gets our own voice." },
];

function labelled(labelText, control, id) {
  const wrap = document.createElement("div");
  wrap.className = "field";
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = labelText;
  control.id = id;
  wrap.append(label, control);
  return wrap;
}

function button(text, onClick, extra = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `quiet ${extra}`.trim();
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function voiceSelect(value) {
  const select = document.createElement("select");
  const none = new Option("No voice", "");
  select.append(none);
  for (const v of voices) select.append(new Option(`${v.name} (${v.kind})`, v.name));
  if (value && !voices.some((v) => v.name === value)) select.append(new Option(`${value} (not in the library)`, value));
  select.value = value;
  return select;
}

/** What the page calls speaker `i`: its name, or "Speaker n". */
function speakerName(i) {
  return speakers[i]?.name?.trim() || `Speaker ${i + 1}`;
}

function render() {
  speakerList.replaceChildren();
  speakers.forEach((s, i) => {
    const li = document.createElement("li");
    li.className = "speaker-row";
    const name = document.createElement("input");
    name.type = "text";
    name.autocomplete = "off";
    name.placeholder = `Speaker ${i + 1}`;
    name.value = s.name || "";
    name.addEventListener("input", () => { s.name = name.value; });
    name.addEventListener("change", renderLineSpeakers);
    const select = voiceSelect(s.voice);
    select.addEventListener("change", () => { s.voice = select.value; });
    const description = document.createElement("input");
    description.type = "text";
    description.autocomplete = "off";
    description.placeholder = i % 2 ? "masculine; calm; low pitch" : "feminine; warm; British accent";
    description.value = s.description;
    description.addEventListener("input", () => { s.description = description.value; });
    li.append(labelled(`Speaker ${i + 1} name`, name, `speaker-${i}-name`),
      labelled(`Speaker ${i + 1} voice`, select, `speaker-${i}-voice`),
      labelled(`Speaker ${i + 1} description`, description, `speaker-${i}-description`));
    if (speakers.length > 1) {
      const remove = button(`Remove speaker ${i + 1}`, () => removeSpeaker(i), "remove");
      li.append(remove);
    }
    speakerList.append(li);
  });
  document.getElementById("add-speaker").disabled = speakers.length >= MAX_SPEAKERS;

  lineList.replaceChildren();
  lines.forEach((line, i) => {
    const li = document.createElement("li");
    li.className = "line-row";
    const who = document.createElement("select");
    who.className = "line-speaker";
    speakers.forEach((_, n) => who.append(new Option(speakerName(n), String(n))));
    who.value = String(Math.min(line.speaker, speakers.length - 1));
    who.addEventListener("change", () => { line.speaker = Number(who.value); });
    const said = document.createElement("input");
    said.type = "text";
    said.value = line.text;
    said.addEventListener("input", () => { line.text = said.value; });
    said.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault(); // Enter adds the next line, spoken by the other speaker
        addLine(i + 1);
      }
    });
    li.append(labelled(`Line ${i + 1} speaker`, who, `line-${i}-speaker`),
      labelled(`Line ${i + 1} text`, said, `line-${i}-text`));
    li.lastChild.classList.add("grow");
    if (lines.length > 1) li.append(button(`Remove line ${i + 1}`, () => removeLine(i), "remove"));
    lineList.append(li);
  });
}

/** The line pickers' speaker names, after a speaker was renamed. */
function renderLineSpeakers() {
  for (const select of lineList.querySelectorAll("select.line-speaker")) {
    [...select.options].forEach((option, n) => { option.textContent = speakerName(n); });
  }
}

function addLine(at = lines.length) {
  const previous = lines[at - 1];
  const speaker = previous ? (previous.speaker + 1) % speakers.length : 0;
  lines.splice(at, 0, { speaker, text: "" });
  render();
  document.getElementById(`line-${at}-text`).focus();
}

function removeLine(i) {
  lines.splice(i, 1);
  render();
  const next = document.getElementById(`line-${Math.min(i, lines.length - 1)}-text`);
  if (next) next.focus();
}

function removeSpeaker(i) {
  speakers.splice(i, 1);
  for (const line of lines) {
    if (line.speaker === i) line.speaker = 0;
    else if (line.speaker > i) line.speaker -= 1;
  }
  render();
  document.getElementById("add-speaker").focus();
}

document.getElementById("add-speaker").addEventListener("click", () => {
  if (speakers.length >= MAX_SPEAKERS) return;
  speakers.push({ name: "", voice: "", description: "" });
  render();
  document.getElementById(`speaker-${speakers.length - 1}-voice`).focus();
});
document.getElementById("add-line").addEventListener("click", () => addLine());

/** New library voices for the pickers (the choices made stay). */
export function setVoices(list) {
  voices = list;
  render();
}

/** A copy of the dialogue, to keep with a take. */
export function snapshot() {
  return { speakers: speakers.map((s) => ({ ...s })), lines: lines.map((l) => ({ ...l })) };
}

export function restore(state) {
  speakers = state.speakers.map((s) => ({ name: "", ...s }));
  lines = state.lines.map((l) => ({ ...l }));
  render();
}

const TAGGED = /^\[\s*speaker\s*(\d+)\s*\]\s*(.*)$/i;
const NAMED = /^([^\s:[\]][^:[\]]{0,39}?)\s*:\s*(.*)$/;

/**
 * A script as speakers and lines: each line `Name: what they say` or `[SPEAKERn] what they say` (any letter case);
 * a line with neither goes on with the line before; blank lines are skipped. Named speakers come in the order they
 * first speak; `[SPEAKERn]` is speaker n+1. Throws DialogueError (on the script box) when it cannot be read.
 */
export function parseScript(text) {
  const found = []; // speakers: {name, key}
  const said = [];
  const speakerFor = (key, name) => {
    let i = found.findIndex((s) => s.key === key);
    if (i < 0) {
      found.push({ key, name });
      i = found.length - 1;
    }
    return i;
  };
  const tagged = new Map(); // n -> index in found
  text.split(/\r?\n/).forEach((raw, row) => {
    const line = raw.trim();
    if (!line) return;
    let match = TAGGED.exec(line);
    if (match) {
      const n = Number(match[1]);
      if (!tagged.has(n)) tagged.set(n, speakerFor(`#${n}`, ""));
      said.push({ speaker: tagged.get(n), text: match[2].trim(), n });
      return;
    }
    match = NAMED.exec(line);
    if (match && match[2].trim()) {
      const name = match[1].trim();
      said.push({ speaker: speakerFor(name.toLocaleLowerCase(), name), text: match[2].trim() });
      return;
    }
    if (!said.length) {
      throw new DialogueError("script", `Line ${row + 1} names no speaker: start it with "Name:" or "[SPEAKER0]"`);
    }
    said[said.length - 1].text = `${said[said.length - 1].text} ${line}`.trim();
  });
  if (!said.length) throw new DialogueError("script", "Paste a script first: one line each, \"Name: what they say\"");
  if (found.length > MAX_SPEAKERS) {
    throw new DialogueError("script", `The script has ${found.length} speakers; the studio takes at most ${MAX_SPEAKERS}`);
  }
  // [SPEAKERn] keeps its number when only tags are used: [SPEAKER1] is the second speaker even if it speaks first
  if (found.every((s) => s.key.startsWith("#"))) {
    const most = Math.max(...tagged.keys());
    if (most < MAX_SPEAKERS) {
      return {
        speakers: Array.from({ length: most + 1 }, () => ({ name: "" })),
        lines: said.map((l) => ({ speaker: l.n, text: l.text })),
      };
    }
  }
  return { speakers: found.map((s) => ({ name: s.name })), lines: said.map((l) => ({ speaker: l.speaker, text: l.text })) };
}

/**
 * Replaces the dialogue with a script's speakers and lines. A speaker keeps the voice and description of the one
 * before at the same place; a speaker named as a library voice gets that voice.
 */
export function useScript(text) {
  const script = parseScript(text);
  speakers = script.speakers.map((s, i) => {
    const voice = voices.find((v) => v.kind !== "alias" && v.name.toLocaleLowerCase() === s.name.toLocaleLowerCase());
    const before = speakers[i] || { voice: "", description: "" };
    return { name: s.name, voice: voice ? voice.name : before.voice, description: before.description };
  });
  lines = script.lines;
  render();
  return script;
}

/** A problem the page can see before asking the server, with the control to show it beside. */
export class DialogueError extends Error {
  constructor(controlId, message) {
    super(message);
    this.controlId = controlId;
  }
}

/**
 * The request fields for the dialogue: `input`, and `voice` / `speaker_descriptions` when any speaker has them.
 * Speakers keep their numbers (`SPEAKER0` is the first), so the n-th voice in the list is the n-th speaker's.
 */
export function requestFields() {
  const said = lines.map((l, i) => ({ ...l, i, text: l.text.trim() })).filter((l) => l.text);
  if (!said.length) throw new DialogueError("line-0-text", "Write at least one line");
  const input = said.map((l) => `[SPEAKER${l.speaker}] ${l.text}`).join("\n");
  const fields = { input, voice: "default" };
  const descriptions = {};
  speakers.forEach((s, i) => {
    if (s.description.trim()) descriptions[`SPEAKER${i}`] = s.description.trim();
  });
  const lastVoice = speakers.reduce((last, s, i) => (s.voice ? i : last), -1);
  if (lastVoice >= 0) {
    const names = [];
    for (let i = 0; i <= lastVoice; i++) {
      const s = speakers[i];
      if (s.voice) names.push(s.voice);
      else if (descriptions[`SPEAKER${i}`]) names.push(speakers[lastVoice].voice); // held place: the description wins
      else {
        throw new DialogueError(`speaker-${i}-voice`,
          `Speaker ${i + 1} needs a voice or a description, since a later speaker has a voice`);
      }
    }
    fields.voice = names.join(",");
  }
  if (Object.keys(descriptions).length) fields.speaker_descriptions = descriptions;
  return fields;
}

/** A short name for the voices used, for the take list. */
export function summary() {
  return speakers.map((s, i) => `${speakerName(i)}: ${s.voice || s.description.trim() || "model's choice"}`).join(" · ");
}

/** How many characters the request's text would have (for the counter), or null while a line is unfinished. */
export function textLength() {
  return lines.map((l) => l.text.trim()).filter(Boolean)
    .reduce((n, t, i, all) => n + [...`[SPEAKER0] ${t}`].length + (i < all.length - 1 ? 1 : 0), 0);
}

render();
