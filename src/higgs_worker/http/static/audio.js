// Audio in the page: streamed 16-bit PCM played through Web Audio as it arrives, and WAV files built from it.

export const RATE = 24000; // the server's PCM: 24 kHz, 16-bit little-endian, mono

let context = null;

/** The page's one AudioContext; call from a click so that the browser lets it play. */
export function audioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!context) context = new Ctx();
  if (context.state === "suspended") context.resume();
  return context;
}

export function base64Bytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/**
 * Plays 16-bit PCM pieces gaplessly as they arrive. Keeps the samples for the finished take, and the mapping from the
 * context's clock to the position in the audio (pieces start later than planned when the network falls behind).
 */
export class StreamPlayer {
  constructor(ctx, rate = RATE) {
    this.ctx = ctx;
    this.rate = rate;
    this.pieces = [];
    this.samples = 0;
    this.next = 0; // context time at which the next piece starts
    this.spans = []; // {at: context time, pos: seconds into the audio}
    this.odd = null; // a byte left over from a piece of odd length
    this.sources = new Set();
    this.stopped = false;
  }

  /** Queues a piece of PCM bytes for playback. */
  push(bytes) {
    if (this.odd !== null) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.odd;
      joined.set(bytes, 1);
      bytes = joined;
      this.odd = null;
    }
    if (bytes.length % 2) {
      this.odd = bytes[bytes.length - 1];
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    if (!bytes.length) return;
    const ints = new Int16Array(bytes.slice().buffer);
    this.pieces.push(ints);
    const pos = this.samples / this.rate;
    this.samples += ints.length;
    if (this.stopped) return;
    const floats = new Float32Array(ints.length);
    for (let i = 0; i < ints.length; i++) floats[i] = ints[i] / 32768;
    const buffer = this.ctx.createBuffer(1, floats.length, this.rate);
    buffer.copyToChannel(floats, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    if (this.next < now + 0.02) {
      this.next = now + 0.08; // (re)start with a little lead so the first pieces do not stutter
      this.spans.push({ at: this.next, pos });
    }
    source.start(this.next);
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
    this.next += buffer.duration;
  }

  /** Seconds into the audio that are playing now (for word highlighting); -1 before the start. */
  position() {
    const now = this.ctx.currentTime;
    let pos = -1;
    for (const span of this.spans) {
      if (span.at <= now) pos = span.pos + (now - span.at);
    }
    return Math.min(pos, this.samples / this.rate);
  }

  /** True while queued audio is still to be heard. */
  playing() {
    return !this.stopped && this.ctx.currentTime < this.next;
  }

  stop() {
    this.stopped = true;
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        /* already ended */
      }
    }
    this.sources.clear();
  }

  get duration() {
    return this.samples / this.rate;
  }

  /** Everything received, as a WAV file. */
  wav() {
    return wavFromInt16(this.pieces, this.rate);
  }
}

/** A 16-bit mono WAV Blob from Int16Array pieces. */
export function wavFromInt16(pieces, rate) {
  const count = pieces.reduce((n, p) => n + p.length, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + count * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, count * 2, true);
  return new Blob([header.buffer, ...pieces.map((p) => p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength))],
    { type: "audio/wav" });
}

/** Any audio the browser can decode (a microphone recording, say) as a 16-bit mono WAV at its own rate. */
export async function toWav(blob) {
  const ctx = audioContext();
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  const mono = new Float32Array(decoded.length);
  for (let c = 0; c < decoded.numberOfChannels; c++) {
    const data = decoded.getChannelData(c);
    for (let i = 0; i < data.length; i++) mono[i] += data[i] / decoded.numberOfChannels;
  }
  const ints = new Int16Array(mono.length);
  for (let i = 0; i < mono.length; i++) ints[i] = Math.max(-32768, Math.min(32767, Math.round(mono[i] * 32767)));
  return wavFromInt16([ints], decoded.sampleRate);
}

export const MEDIA_TYPES = {
  mp3: "audio/mpeg", opus: "audio/ogg", aac: "audio/aac", flac: "audio/flac", wav: "audio/wav", pcm: "audio/pcm",
};
