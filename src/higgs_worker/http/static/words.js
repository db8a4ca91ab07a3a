// Words lit up while they are heard, when the server sends timings: `words: [{word, start, end}]` (seconds into the
// audio) in the SSE `speech.audio.words` event or the final `speech.audio.done` event. Without timings nothing shows.

/** Merges newly received timings into a take's list, in time order, without duplicates. */
export function addWords(list, incoming) {
  if (!Array.isArray(incoming)) return list;
  for (const w of incoming) {
    if (!w || typeof w.word !== "string" || !Number.isFinite(w.start) || !Number.isFinite(w.end)) continue;
    if (!list.some((x) => x.start === w.start && x.word === w.word)) list.push({ word: w.word, start: w.start, end: w.end });
  }
  list.sort((a, b) => a.start - b.start);
  return list;
}

/** Index of the word being spoken at `t` seconds, or -1. */
export function wordAt(words, t) {
  let lo = 0;
  let hi = words.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (words[mid].end <= t) lo = mid + 1;
    else if (words[mid].start > t) hi = mid - 1;
    else return mid;
  }
  return -1;
}

/**
 * Shows `words` in `box` and, between start() and stop(), keeps the word heard at `position()` (seconds into the
 * audio, -1 before it starts) marked. update() re-renders after more words arrived.
 */
export function highlighter(box, words, position) {
  let spans = [];
  let current = -1;
  let frame = 0;
  const mark = (i) => {
    if (i === current) return;
    if (spans[current]) spans[current].classList.remove("spoken");
    if (spans[i]) spans[i].classList.add("spoken");
    current = i;
  };
  const tick = () => {
    mark(wordAt(words, position()));
    frame = requestAnimationFrame(tick);
  };
  const render = () => {
    box.replaceChildren();
    spans = words.map((w, i) => {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.dataset.index = String(i);
      box.append(span, " ");
      return span;
    });
    box.hidden = words.length === 0;
    current = -1;
  };
  render();
  return {
    update: render,
    start() {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(tick);
    },
    stop() {
      cancelAnimationFrame(frame);
      mark(-1);
    },
  };
}
