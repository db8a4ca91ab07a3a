// Dialogue: lines, each said by a speaker; speakers, each with a library voice or a description (or neither: the
// model's choice). Sent as `[SPEAKERn] line` text, the voices in speaker order as a comma list, and the
// descriptions as `speaker_descriptions` ({"SPEAKER1": "masculine; deep"}).

const MAX_SPEAKERS = 8;

const speakerList = document.getElementById("speaker-list");
const lineList = document.getElementById("line-list");

let voices = [];
let speakers = [{ voice: "", description: "" }, { voice: "", description: "" }];
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

function render() {
  speakerList.replaceChildren();
  speakers.forEach((s, i) => {
    const li = document.createElement("li");
    li.className = "speaker-row";
    const select = voiceSelect(s.voice);
    select.addEventListener("change", () => { s.voice = select.value; });
    const description = document.createElement("input");
    description.type = "text";
    description.autocomplete = "off";
    description.placeholder = i % 2 ? "masculine; calm; low pitch" : "feminine; warm; British accent";
    description.value = s.description;
    description.addEventListener("input", () => { s.description = description.value; });
    li.append(labelled(`Speaker ${i + 1} voice`, select, `speaker-${i}-voice`),
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
    speakers.forEach((_, n) => who.append(new Option(`Speaker ${n + 1}`, String(n))));
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
  speakers.push({ voice: "", description: "" });
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
  speakers = state.speakers.map((s) => ({ ...s }));
  lines = state.lines.map((l) => ({ ...l }));
  render();
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
  return speakers.map((s, i) => `${i + 1}: ${s.voice || s.description.trim() || "model's choice"}`).join(" · ");
}

render();
