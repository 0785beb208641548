// Voice rooms: the small pure parts of the audio path, with no DOM and no Web Audio, so that
// Node can test them (tests/browser/jitter.test.mjs): 16-bit sequence numbers that wrap, the
// per-speaker jitter buffer, Opus packet durations (from the TOC byte), 20 ms framing of
// captured samples and RMS.

export const SEQ_MOD = 0x10000;

/** The next 16-bit sequence number after `seq`. */
export const seqNext = (seq) => (seq + 1) & 0xffff;

/**
 * a - b for 16-bit sequence numbers that wrap: the signed distance in -32768..32767, so that
 * seqDiff(0, 65535) is 1 (0 comes after 65535) and seqDiff(65535, 0) is -1.
 */
export function seqDiff(a, b) {
  return ((((a - b) & 0xffff) + 0x8000) & 0xffff) - 0x8000;
}

/** Is `a` after `b` (by the shorter way round)? */
export const seqAfter = (a, b) => seqDiff(a, b) > 0;

// Opus frame sizes in tenths of a millisecond by TOC config (RFC 6716, section 3.1).
const OPUS_FRAME_TENTHS = [
  100, 200, 400, 600, 100, 200, 400, 600, 100, 200, 400, 600, // SILK NB, MB, WB
  100, 200, 100, 200, // Hybrid SWB, FB
  25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, // CELT NB, WB, SWB, FB
];

/**
 * The duration of one Opus packet in ms, from its TOC byte (and frame count byte for code 3):
 * 20 for WebCodecs' 20 ms packets; MediaRecorder's may be longer. 0 for an empty or broken one.
 */
export function opusPacketMs(packet) {
  if (!packet || packet.length < 1) return 0;
  const toc = packet[0];
  const frame = OPUS_FRAME_TENTHS[toc >> 3] / 10;
  const code = toc & 3;
  let frames;
  if (code === 0) frames = 1;
  else if (code === 1 || code === 2) frames = 2;
  else {
    if (packet.length < 2) return 0;
    frames = packet[1] & 0x3f;
  }
  const ms = frame * frames;
  return ms > 120 ? 0 : ms; // a packet holds at most 120 ms
}

/** One Opus frame length (RFC 6716 3.2.1) at b[i]: {len, bytes} or null. */
function frameLen(b, i) {
  if (i >= b.length) return null;
  if (b[i] < 252) return { len: b[i], bytes: 1 };
  if (i + 1 >= b.length) return null;
  return { len: b[i] + 4 * b[i + 1], bytes: 2 };
}

/**
 * Splits an Opus packet of several frames (MediaRecorder's are 60 ms: three 20 ms frames, code
 * 3) into packets of one frame each (code 0: the TOC with its frame count bits cleared, then
 * the frame), as RFC 6716 section 3.2 lays them out. A packet of one frame comes back as it
 * is; a malformed one gives [].
 */
export function splitOpusPacket(packet) {
  if (!packet || packet.length < 1) return [];
  const toc = packet[0];
  const code = toc & 3;
  if (code === 0) return [packet];
  const single = (frame) => {
    const out = new Uint8Array(1 + frame.length);
    out[0] = toc & 0xfc;
    out.set(frame, 1);
    return out;
  };
  const n = packet.length;
  if (code === 1) {
    if ((n - 1) % 2) return [];
    const half = (n - 1) / 2;
    return [single(packet.subarray(1, 1 + half)), single(packet.subarray(1 + half))];
  }
  if (code === 2) {
    const l = frameLen(packet, 1);
    if (!l || 1 + l.bytes + l.len > n) return [];
    const start = 1 + l.bytes;
    return [single(packet.subarray(start, start + l.len)), single(packet.subarray(start + l.len))];
  }
  // code 3: [count byte: v p M(6)] [padding lengths if p] [M-1 frame lengths if v] frames [padding]
  if (n < 2) return [];
  const vbr = packet[1] & 0x80;
  const padded = packet[1] & 0x40;
  const count = packet[1] & 0x3f;
  if (!count) return [];
  let i = 2;
  let padding = 0;
  if (padded) {
    for (;;) {
      if (i >= n) return [];
      const p = packet[i++];
      padding += p === 255 ? 254 : p;
      if (p !== 255) break;
    }
  }
  const lens = [];
  if (vbr) {
    for (let k = 0; k < count - 1; k++) {
      const l = frameLen(packet, i);
      if (!l) return [];
      lens.push(l.len);
      i += l.bytes;
    }
    const used = lens.reduce((a, b) => a + b, 0);
    const last = n - padding - i - used;
    if (last < 0) return [];
    lens.push(last);
  } else {
    const total = n - padding - i;
    if (total < 0 || total % count) return [];
    for (let k = 0; k < count; k++) lens.push(total / count);
  }
  const out = [];
  for (const l of lens) {
    out.push(single(packet.subarray(i, i + l)));
    i += l;
  }
  return out;
}

/** Root mean square of samples (Float32Array or array), 0 for none. */
export function rms(samples) {
  const n = samples?.length || 0;
  if (!n) return 0;
  let s = 0;
  for (let i = 0; i < n; i++) s += samples[i] * samples[i];
  return Math.sqrt(s / n);
}

/**
 * Cuts a stream of captured mono samples (any chunk sizes) into frames of exactly `frameSize`
 * samples (960 = 20 ms at 48 kHz), each handed to `onFrame(Float32Array, index)`.
 */
export class Reframer {
  constructor(frameSize, onFrame) {
    this.frameSize = frameSize;
    this.onFrame = onFrame;
    this.buf = new Float32Array(frameSize);
    this.fill = 0;
    this.count = 0;
  }

  push(samples) {
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.frameSize - this.fill, samples.length - i);
      this.buf.set(samples.subarray ? samples.subarray(i, i + n) : samples.slice(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === this.frameSize) {
        const frame = this.buf;
        this.buf = new Float32Array(this.frameSize);
        this.fill = 0;
        this.onFrame(frame, this.count++);
      }
    }
  }

  reset() {
    this.fill = 0;
  }
}

/**
 * Linear resampling of a mono chunk from `from` Hz to `to` Hz, keeping the phase across chunks
 * (one per stream). Used when a microphone track is not at 48 kHz.
 */
export class LinearResampler {
  constructor(from, to) {
    this.step = from / to;
    this.pos = 0; // position of the next output sample, in input samples from the start of `prev`
    this.prev = 0; // the last input sample of the previous chunk (index -1 of the next)
  }

  push(input) {
    if (this.step === 1) return input;
    const out = [];
    // Input index x in [-1, input.length - 1]: sample(-1) is prev.
    const at = (i) => (i < 0 ? this.prev : input[i]);
    let x = this.pos - 1;
    while (x <= input.length - 1) {
      const i = Math.floor(x);
      const f = x - i;
      out.push(f === 0 ? at(i) : at(i) * (1 - f) + at(i + 1) * f);
      x += this.step;
    }
    this.pos = x + 1 - input.length;
    if (input.length) this.prev = input[input.length - 1];
    return Float32Array.from(out);
  }
}

/**
 * The jitter buffer of one speaker: packets come in (seq, payload, ms); they go out in seq
 * order through pull(). It first fills to `targetMs` (or waits `targetMs` after the first
 * packet, for a burst shorter than that), then hands out one packet per pull; a packet missing
 * when its turn comes while later ones are there is skipped (`{missing: true}`, played as
 * silence); a packet older than the last one handed out is late and dropped; when the buffer
 * holds more than `maxMs` the oldest go (the listener fell behind). When it runs dry it fills
 * up again before playing on.
 */
export class JitterBuffer {
  constructor({ targetMs = 60, maxMs = 300, frameMs = 20 } = {}) {
    this.targetMs = targetMs;
    this.maxMs = maxMs;
    this.frameMs = frameMs;
    this.packets = new Map(); // seq -> {seq, payload, ms, at}
    this.bufferedMs = 0;
    this.playing = false;
    this.next = null; // seq handed out next, while playing
    this.last = null; // seq handed out last (for late packets)
    this.firstAt = null; // arrival of the oldest packet while filling
    this.stats = { received: 0, late: 0, duplicate: 0, lost: 0, overflow: 0, played: 0 };
  }

  /** -> 'queued' | 'late' | 'duplicate'. `now` in ms (any clock). */
  push(seq, payload, ms = this.frameMs, now = 0) {
    seq &= 0xffff;
    this.stats.received++;
    if (this.last !== null && !seqAfter(seq, this.last)) {
      this.stats.late++;
      return 'late';
    }
    if (this.packets.has(seq)) {
      this.stats.duplicate++;
      return 'duplicate';
    }
    this.packets.set(seq, { seq, payload, ms: ms || this.frameMs, at: now });
    this.bufferedMs += ms || this.frameMs;
    if (this.firstAt === null) this.firstAt = now;
    while (this.bufferedMs > this.maxMs && this.packets.size > 1) this._dropOldest();
    return 'queued';
  }

  _oldest() {
    let best = null;
    for (const s of this.packets.keys()) if (best === null || seqDiff(s, best) < 0) best = s;
    return best;
  }

  _dropOldest() {
    const s = this._oldest();
    const p = this.packets.get(s);
    this.packets.delete(s);
    this.bufferedMs -= p.ms;
    this.stats.overflow++;
    this.last = s;
    if (this.next !== null && !seqAfter(this.next, s)) this.next = seqNext(s);
  }

  /** Packets waiting. */
  get size() {
    return this.packets.size;
  }

  /**
   * The next packet to play, in seq order: {seq, payload, ms} or {seq, missing: true, ms} for
   * one that never came; null while filling or dry. `now` in ms, the clock of push().
   */
  pull(now = 0) {
    if (!this.playing) {
      if (!this.packets.size) return null;
      if (this.bufferedMs < this.targetMs && now - this.firstAt < this.targetMs) return null;
      this.playing = true;
      this.next = this._oldest();
    }
    if (!this.packets.size) {
      // Dry: fill up again before playing on (the speaker paused, or the network hiccuped).
      this.playing = false;
      this.firstAt = null;
      return null;
    }
    const seq = this.next;
    this.next = seqNext(seq);
    this.last = seq;
    const p = this.packets.get(seq);
    if (!p) {
      // A long gap (frames the node dropped, say) is jumped over rather than played as silence.
      const oldest = this._oldest();
      const gap = seqDiff(oldest, seq);
      if (gap * this.frameMs > this.targetMs) {
        this.stats.lost += gap;
        this.next = oldest;
        return this.pull(now);
      }
      this.stats.lost++;
      return { seq, missing: true, ms: this.frameMs };
    }
    this.packets.delete(seq);
    this.bufferedMs -= p.ms;
    this.stats.played++;
    return { seq, payload: p.payload, ms: p.ms };
  }

  reset() {
    this.packets.clear();
    this.bufferedMs = 0;
    this.playing = false;
    this.next = this.last = this.firstAt = null;
  }
}

/**
 * Contiguous playout on an audio clock (seconds): where the next packet of a speaker starts.
 * Packets follow each other without a gap; when the clock has passed the end of what was
 * scheduled (a pause, an underrun) playback starts again `leadS` from now.
 */
export class PlayoutClock {
  constructor({ leadS = 0.01 } = {}) {
    this.leadS = leadS;
    this.head = 0;
  }

  /** How far ahead of `now` audio is scheduled, in seconds (0 when it ran out). */
  ahead(now) {
    return Math.max(0, this.head - now);
  }

  /** The start time for a packet of `ms` at clock `now`; moves the head on. */
  place(ms, now) {
    if (this.head < now + 0.002) this.head = now + this.leadS;
    const at = this.head;
    this.head += ms / 1000;
    return at;
  }
}
