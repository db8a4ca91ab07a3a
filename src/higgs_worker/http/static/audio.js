// Audio in the page: a stream played through Web Audio as it arrives (16-bit PCM as it is, the compressed formats
// decoded as they come), the file it makes, and WAV files built from PCM.

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
 * Plays audio pieces gaplessly as they arrive: 16-bit PCM (`push`) or decoded samples (`pushSamples`). Keeps the
 * PCM for the finished take, and the mapping from the context's clock to the position in the audio (pieces start
 * later than planned when the network falls behind).
 */
export class StreamPlayer {
  constructor(ctx, rate = RATE) {
    this.ctx = ctx;
    this.rate = rate;
    this.pieces = [];
    this.samples = 0; // PCM samples received
    this.seconds = 0; // audio received, in seconds
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
    this.samples += ints.length;
    const floats = new Float32Array(ints.length);
    for (let i = 0; i < ints.length; i++) floats[i] = ints[i] / 32768;
    this.pushSamples(floats, this.rate);
  }

  /** Queues decoded samples (mono, at `rate`) for playback. */
  pushSamples(floats, rate) {
    if (!floats.length) return;
    const pos = this.seconds;
    this.seconds += floats.length / rate;
    if (this.stopped) return;
    const buffer = this.ctx.createBuffer(1, floats.length, rate);
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
    return Math.min(pos, this.seconds);
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
    return this.seconds;
  }

  /** Everything received, as a WAV file. */
  wav() {
    return wavFromInt16(this.pieces, this.rate);
  }
}

/** Seconds of decoded audio held back from playback until the next decode: the last frame of a cut-off file. */
const HOLD_S = 0.25;

/**
 * An encoded stream (mp3, opus, aac, flac) played while it arrives. The browser decodes only whole files, so the
 * bytes so far are decoded again as more come (one decode at a time, paced by what the last one cost), and the
 * samples past those already queued go to the player; the last HOLD_S seconds wait for the next decode, since a
 * file cut mid-frame ends differently from the same file with more bytes. Together the pieces are the file.
 */
export class EncodedStream {
  constructor(player, type) {
    this.player = player;
    this.type = type;
    this.parts = [];
    this.queued = 0; // decoded samples handed to the player
    this.rate = 0; // of the decoded samples (the context's)
    this.running = null; // the decode loop, while one runs
    this.more = false; // bytes arrived since the running decode began
  }

  push(bytes) {
    this.parts.push(bytes);
    this.more = true;
    if (!this.running) this.running = this.loop().finally(() => { this.running = null; });
  }

  /** Everything received, as it came. */
  blob() {
    return new Blob(this.parts, { type: this.type });
  }

  /** The take's file, once finish() has run: as it came, but a FLAC stream's header gets its length. */
  async file() {
    if (this.type !== MEDIA_TYPES.flac || !this.rate) return this.blob();
    const bytes = new Uint8Array(await this.blob().arrayBuffer());
    return new Blob([withFlacLength(bytes, this.queued / this.rate)], { type: this.type });
  }

  /** Decodes the end (no hold-back) once the stream is complete, or cut short. */
  async finish() {
    while (this.running) await this.running;
    await this.decode(true);
  }

  async loop() {
    while (this.more) {
      this.more = false;
      const started = performance.now();
      await this.decode(false);
      const cost = performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, Math.max(150, 2 * cost)));
    }
  }

  async decode(final) {
    let audio;
    try {
      audio = await this.player.ctx.decodeAudioData(await this.blob().arrayBuffer());
    } catch {
      return; // too little to decode yet (a header alone)
    }
    const samples = audio.getChannelData(0);
    this.rate = audio.sampleRate;
    const end = final ? samples.length : samples.length - Math.round(HOLD_S * audio.sampleRate);
    if (end > this.queued) {
      this.player.pushSamples(samples.slice(this.queued, end), audio.sampleRate);
      this.queued = end;
    }
  }
}

/**
 * A streamed FLAC file's header says its length is unknown (it was written before the end was known), and browsers
 * then give the file no duration. This writes `seconds` into it: the 36-bit sample count in STREAMINFO, the first
 * metadata block, after the "fLaC" mark and the block's 4-byte header.
 */
export function withFlacLength(bytes, seconds) {
  const mark = String.fromCharCode(...bytes.subarray(0, 4));
  if (bytes.length < 42 || mark !== "fLaC" || (bytes[4] & 0x7f) !== 0) return bytes;
  const info = 8;
  const rate = (bytes[info + 10] << 12) | (bytes[info + 11] << 4) | (bytes[info + 12] >> 4);
  const total = Math.round(seconds * rate);
  bytes[info + 13] = (bytes[info + 13] & 0xf0) | (Math.floor(total / 2 ** 32) & 0x0f);
  bytes[info + 14] = (total >>> 24) & 0xff;
  bytes[info + 15] = (total >>> 16) & 0xff;
  bytes[info + 16] = (total >>> 8) & 0xff;
  bytes[info + 17] = total & 0xff;
  return bytes;
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
