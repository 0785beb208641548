// The MediaRecorder fallback of voice rooms: MediaRecorder hands out a WebM (Matroska) byte
// stream of Opus in arbitrary slices; a room's frames are bare Opus packets (docs/protocol.md,
// "Audio frames"), so this pulls the packets out of the SimpleBlocks / Blocks of the audio track
// as the bytes come. A listener then decodes them exactly as it decodes WebCodecs' packets.
// Pure (no DOM): tested by tests/browser/jitter.test.mjs.

const ID = {
  EBML: 0x1a45dfa3,
  Segment: 0x18538067,
  Cluster: 0x1f43b675,
  BlockGroup: 0xa0,
  Block: 0xa1,
  SimpleBlock: 0xa3,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackNumber: 0xd7,
  CodecID: 0x86,
  CodecPrivate: 0x63a2,
};
// Elements whose children are read (the others are skipped whole).
const MASTER = new Set([ID.Segment, ID.Cluster, ID.BlockGroup, ID.Tracks, ID.TrackEntry]);

/** An EBML variable-length integer at `b[i]`: {len, value} (value with the marker bit removed), null if incomplete. */
function vint(b, i, keepMarker = false) {
  if (i >= b.length) return null;
  const first = b[i];
  let len = 1;
  while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
  if (len > 8) return { len: 1, value: NaN }; // not EBML
  if (i + len > b.length) return null;
  let value = keepMarker ? first : first & (0xff >> len);
  let allOnes = value === (0xff >> len);
  for (let k = 1; k < len; k++) {
    value = value * 256 + b[i + k];
    if (b[i + k] !== 0xff) allOnes = false;
  }
  return { len, value, unknown: !keepMarker && allOnes };
}

export class WebmOpusDemuxer {
  /** `onPacket(Uint8Array, {timecodeMs})` for each Opus packet of the (first) Opus track. */
  constructor(onPacket) {
    this.onPacket = onPacket;
    this.buf = new Uint8Array(0);
    this.skip = 0; // bytes of a skipped element still to come
    this.track = null; // the Opus track's number (null: the first track seen in a block)
    this.clusterMs = 0;
    this.codec = null;
    this.opusHead = null;
    this.packets = 0;
    this.laced = 0; // laced blocks (not expected from MediaRecorder), skipped and counted
    this.broken = false;
  }

  /** More bytes of the stream (Uint8Array or ArrayBuffer). */
  push(bytes) {
    if (this.broken) return;
    let b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    if (this.skip) {
      const n = Math.min(this.skip, b.length);
      this.skip -= n;
      b = b.subarray(n);
    }
    if (this.buf.length) {
      const all = new Uint8Array(this.buf.length + b.length);
      all.set(this.buf);
      all.set(b, this.buf.length);
      b = all;
    }
    let i = 0;
    for (;;) {
      const id = vint(b, i, true);
      if (!id) break;
      const size = vint(b, i + id.len);
      if (!size) break;
      if (Number.isNaN(id.value) || Number.isNaN(size.value)) {
        this.broken = true;
        return;
      }
      const head = id.len + size.len;
      if (MASTER.has(id.value) || id.value === ID.EBML) {
        if (id.value === ID.EBML) {
          // The header: skip it whole (it has a known size).
          if (i + head + size.value > b.length) break;
          i += head + size.value;
          continue;
        }
        i += head; // go into it; its children follow (an unknown size is fine)
        continue;
      }
      if (size.unknown) {
        this.broken = true;
        return;
      }
      const wanted = [ID.SimpleBlock, ID.Block, ID.TrackNumber, ID.CodecID, ID.CodecPrivate, 0xe7 /* Timecode */].includes(id.value);
      if (!wanted) {
        // Skip it, possibly across pushes (Cues, Tags, Void, ...).
        const left = b.length - (i + head);
        if (size.value > left) {
          this.skip = size.value - left;
          i = b.length;
          break;
        }
        i += head + size.value;
        continue;
      }
      if (i + head + size.value > b.length) break; // wait for the rest
      const body = b.subarray(i + head, i + head + size.value);
      this._element(id.value, body);
      i += head + size.value;
    }
    this.buf = b.slice(i);
  }

  _uint(body) {
    let v = 0;
    for (const x of body) v = v * 256 + x;
    return v;
  }

  _element(id, body) {
    switch (id) {
      case 0xe7:
        this.clusterMs = this._uint(body);
        return;
      case ID.TrackNumber:
        this._trackNo = this._uint(body);
        return;
      case ID.CodecID: {
        const codec = new TextDecoder().decode(body);
        if (codec === 'A_OPUS' && this.track === null) {
          this.track = this._trackNo ?? null;
          this.codec = codec;
        }
        return;
      }
      case ID.CodecPrivate:
        if (this.codec && !this.opusHead) this.opusHead = body.slice();
        return;
      default:
        this._block(body);
    }
  }

  _block(body) {
    const t = vint(body, 0);
    if (!t || body.length < t.len + 3) return;
    if (this.track !== null && t.value !== this.track) return;
    const rel = (body[t.len] << 8) | body[t.len + 1];
    const relMs = rel & 0x8000 ? rel - 0x10000 : rel;
    const flags = body[t.len + 2];
    if (flags & 0x06) {
      this.laced++;
      return;
    }
    const packet = body.slice(t.len + 3);
    if (!packet.length) return;
    this.packets++;
    this.onPacket(packet, { timecodeMs: this.clusterMs + relMs });
  }
}
