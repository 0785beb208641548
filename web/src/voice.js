// Voice rooms: the audio of the room the page is in — the microphone captured, encoded to Opus
// and sent one 20 ms packet per binary frame (sdk.sendAudio), and the other members' packets
// put in order by a jitter buffer per speaker, decoded and played through Web Audio.
//
// Encoders (the first one the browser has, or the one picked):
//   - 'webcodecs': WebCodecs AudioEncoder, codec 'opus', 48 kHz mono, 20 ms frames
//     (opus.frameDuration 20000). Samples come from MediaStreamTrackProcessor where there is
//     one, else from a ScriptProcessorNode of a 48 kHz AudioContext.
//   - 'mediarecorder': MediaRecorder 'audio/webm;codecs=opus' in 20 ms slices; webm.js takes the
//     Opus packets out of the WebM stream and splitOpusPacket() cuts its 60 ms packets into
//     20 ms ones, so that the wire carries the same bare 20 ms Opus packets either way and a
//     listener needs nothing to tell them apart.
// Playback needs WebCodecs AudioDecoder (Opus, 48 kHz mono); without it the page says so and
// still shows who is speaking.
//
// What is measured (decoded frames, RMS of the decoder's output, late and lost packets) is kept
// in `stats` and mirrored on `window.__voiceStats`, for the page and for tests.

import { JitterBuffer, LinearResampler, PlayoutClock, Reframer, opusPacketMs, rms, seqNext, splitOpusPacket } from './jitter.js';
import { WebmOpusDemuxer } from './webm.js';

export const SAMPLE_RATE = 48000;
export const FRAME_MS = 20;
const FRAME_SAMPLES = (SAMPLE_RATE * FRAME_MS) / 1000; // 960
export const TARGET_MS = 60; // jitter buffer target
const BITRATE = 32000;
const MR_TYPE = 'audio/webm;codecs=opus';

const OPUS_ENC = { codec: 'opus', sampleRate: SAMPLE_RATE, numberOfChannels: 1, bitrate: BITRATE, opus: { frameDuration: FRAME_MS * 1000 } };
const OPUS_DEC = { codec: 'opus', sampleRate: SAMPLE_RATE, numberOfChannels: 1 };

export const ENCODER_NAMES = {
  webcodecs: 'WebCodecs AudioEncoder (Opus, 20 ms packets)',
  mediarecorder: 'MediaRecorder (WebM/Opus, repacketized to 20 ms)',
};

/** What this browser can do: {webcodecs, mediarecorder, decoder} (booleans, checked once). */
let supportPromise = null;
export function voiceSupport() {
  supportPromise ??= (async () => {
    const out = { webcodecs: false, mediarecorder: false, decoder: false, microphone: !!navigator.mediaDevices?.getUserMedia };
    try {
      out.webcodecs = typeof AudioEncoder === 'function' && typeof AudioData === 'function' && !!(await AudioEncoder.isConfigSupported(OPUS_ENC)).supported;
    } catch {}
    try {
      out.mediarecorder = typeof MediaRecorder === 'function' && MediaRecorder.isTypeSupported(MR_TYPE);
    } catch {}
    try {
      out.decoder = typeof AudioDecoder === 'function' && !!(await AudioDecoder.isConfigSupported(OPUS_DEC)).supported;
    } catch {}
    return out;
  })();
  return supportPromise;
}

function newStats() {
  return {
    encoder: null, // 'webcodecs' | 'mediarecorder' while talking
    capture: null, // where the samples come from
    talking: false,
    sent: 0, // packets handed to the socket
    notSent: 0, // packets sendAudio refused (not connected, muted, socket behind)
    micRms: 0,
    received: 0,
    decoded: 0,
    late: 0,
    lost: 0,
    overflow: 0,
    energy: 0, // sum of squares of every decoded sample
    peakRms: 0,
    lastRms: 0,
    decodeErrors: 0,
    scheduled: 0, // decoded packets put on the AudioContext's clock (played)
    tooLate: 0, // decoded after their time had passed (not played)
    audioState: null, // the AudioContext's state
    speakers: {}, // user id (or "#<member_no>") -> {memberNo, received, decoded, late, lost, energy, peakRms, lastRms}
  };
}

/**
 * The audio of one joined room. `client` is the ConvergeClient; `onChange()` is called (at most
 * every 100 ms) when the stats move, for the page's meters.
 */
export class VoiceSession {
  constructor({ client, roomId, onChange = () => {}, onError = () => {} }) {
    this.client = client;
    this.roomId = roomId;
    this.onChange = onChange;
    this.onError = onError;
    this.stats = newStats();
    this.speakers = new Map(); // member_no -> speaker
    this.ctx = null;
    this.seq = Math.floor(Math.random() * 0x10000);
    this.muted = false; // no packet goes out while muted (the node would drop them anyway)
    this.capture = null;
    this.closed = false;
    this._changeTimer = null;
    this._tick = setInterval(() => this._pumpAll(), 10);
    globalThis.__voiceStats = this.stats;
  }

  /** The AudioContext (made on a click: browsers start it only after a gesture). */
  audio() {
    if (!this.ctx) {
      const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
      if (!AC) return null;
      try {
        this.ctx = new AC({ sampleRate: SAMPLE_RATE, latencyHint: 'interactive' });
      } catch {
        this.ctx = new AC();
      }
      this.ctx.onstatechange = () => {
        this.stats.audioState = this.ctx?.state ?? null;
        this._changed();
      };
      this.stats.audioState = this.ctx.state;
    }
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  get audioBlocked() {
    return !!this.ctx && this.ctx.state !== 'running';
  }

  // ------------------------------------------------------------ receiving

  /** An 'audio' event of the SDK: {roomId, memberNo, userId, seq, payload}. */
  onAudio(f) {
    if (this.closed || f.roomId !== this.roomId) return;
    const sp = this._speaker(f.memberNo, f.userId);
    // The payload is a view into the socket's buffer: keep a copy.
    const payload = f.payload.slice();
    this.stats.received++;
    sp.stats.received++;
    const r = sp.jb.push(f.seq, payload, opusPacketMs(payload) || FRAME_MS, performance.now());
    if (r === 'late') {
      this.stats.late++;
      sp.stats.late++;
    }
    this._pump(sp);
  }

  _speaker(memberNo, userId) {
    let sp = this.speakers.get(memberNo);
    if (!sp) {
      sp = {
        memberNo,
        userId,
        jb: new JitterBuffer({ targetMs: TARGET_MS, maxMs: 300, frameMs: FRAME_MS }),
        clock: new PlayoutClock({ leadS: 0.01 }),
        clockKind: null,
        decoder: null,
        ts: 0,
        when: new Map(), // chunk timestamp -> start time on the clock
        stats: null,
      };
      // Per user, kept across member numbers (a rejoin after a reconnect makes a new member).
      sp.stats = (userId && this.stats.speakers[userId]) || this._newSpeakerStats(userId);
      sp.stats.memberNo = memberNo;
      this.stats.speakers[userId ?? `#${memberNo}`] = sp.stats;
      this.speakers.set(memberNo, sp);
    }
    if (userId && !sp.userId) {
      // Learned who it is: its numbers go to the user's.
      sp.userId = userId;
      const anon = sp.stats;
      delete this.stats.speakers[`#${memberNo}`];
      const mine = this.stats.speakers[userId];
      if (mine) {
        for (const k of ['received', 'decoded', 'late', 'lost', 'energy']) mine[k] += anon[k];
        mine.peakRms = Math.max(mine.peakRms, anon.peakRms);
        mine.lastRms = anon.lastRms;
        mine.memberNo = memberNo;
        sp.stats = mine;
      } else {
        anon.userId = userId;
        this.stats.speakers[userId] = anon;
      }
    }
    return sp;
  }

  _newSpeakerStats(userId) {
    return { memberNo: null, userId: userId ?? null, received: 0, decoded: 0, late: 0, lost: 0, energy: 0, peakRms: 0, lastRms: 0 };
  }

  /** Stats of one member (by user id), or null. */
  speakerStats(userId) {
    return this.stats.speakers[userId] || null;
  }

  /** The clock playback is scheduled on: the AudioContext's when it runs, else wall time (decode still goes on). */
  _now(sp) {
    const running = this.ctx?.state === 'running';
    const kind = running ? 'audio' : 'wall';
    if (sp.clockKind !== kind) {
      sp.clockKind = kind;
      sp.clock = new PlayoutClock({ leadS: 0.01 });
    }
    return running ? this.ctx.currentTime : performance.now() / 1000;
  }

  _pumpAll() {
    for (const sp of this.speakers.values()) this._pump(sp);
  }

  /** Keeps about TARGET_MS of each speaker's audio scheduled ahead of the clock. */
  _pump(sp) {
    if (this.closed) return;
    const now = this._now(sp);
    const wall = performance.now();
    while (sp.clock.ahead(now) < TARGET_MS / 1000) {
      const p = sp.jb.pull(wall);
      if (!p) break;
      const at = sp.clock.place(p.ms, now);
      if (p.missing) {
        this.stats.lost++;
        sp.stats.lost++;
        continue;
      }
      this._decode(sp, p, at);
    }
    const j = sp.jb.stats;
    this.stats.overflow += j.overflow - (sp.overflowSeen || 0);
    sp.overflowSeen = j.overflow;
  }

  _decoder(sp) {
    if (sp.decoder && sp.decoder.state !== 'closed') return sp.decoder;
    if (typeof AudioDecoder !== 'function') return null;
    sp.when.clear();
    sp.decoder = new AudioDecoder({
      output: (data) => this._decoded(sp, data),
      error: (err) => {
        this.stats.decodeErrors++;
        console.warn('voice: decoder', err);
      },
    });
    sp.decoder.configure(OPUS_DEC);
    return sp.decoder;
  }

  _decode(sp, p, at) {
    const dec = this._decoder(sp);
    if (!dec) return;
    const ts = sp.ts;
    sp.ts += p.ms * 1000;
    sp.when.set(ts, { at, kind: sp.clockKind });
    try {
      dec.decode(new EncodedAudioChunk({ type: 'key', timestamp: ts, data: p.payload }));
    } catch (err) {
      this.stats.decodeErrors++;
      sp.when.delete(ts);
      console.warn('voice: decode', err);
    }
  }

  _decoded(sp, data) {
    const slot = sp.when.get(data.timestamp);
    sp.when.delete(data.timestamp);
    const n = data.numberOfFrames;
    const samples = new Float32Array(n);
    try {
      data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
    } catch {
      // A decoder that hands out interleaved samples only: take the first channel.
      const ch = data.numberOfChannels;
      const all = new Float32Array(n * ch);
      data.copyTo(all, { planeIndex: 0, format: 'f32' });
      for (let i = 0; i < n; i++) samples[i] = all[i * ch];
    }
    const rate = data.sampleRate;
    data.close();
    const level = rms(samples);
    let energy = 0;
    for (let i = 0; i < n; i++) energy += samples[i] * samples[i];
    for (const s of [this.stats, sp.stats]) {
      s.decoded++;
      s.energy += energy;
      s.lastRms = level;
      if (level > s.peakRms) s.peakRms = level;
    }
    this._changed();
    const ctx = this.ctx;
    if (!slot || slot.kind !== 'audio' || ctx?.state !== 'running') return; // measured, not played
    if (slot.at < ctx.currentTime) {
      this.stats.tooLate++; // decoded too late to play in its place
      return;
    }
    this.stats.scheduled++;
    const buf = ctx.createBuffer(1, n, rate);
    buf.copyToChannel(samples, 0);
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(ctx.destination);
    src.start(slot.at);
  }

  /** Forgets a member who left (their decoder and buffer). */
  dropSpeaker(memberNo) {
    const sp = this.speakers.get(memberNo);
    if (!sp) return;
    this.speakers.delete(memberNo);
    try {
      if (sp.decoder?.state !== 'closed') sp.decoder?.close();
    } catch {}
  }

  // ------------------------------------------------------------ sending

  /** Starts the microphone: `choice` 'auto' | 'webcodecs' | 'mediarecorder'. Resolves to the encoder used. */
  async startTalking(choice = 'auto') {
    if (this.capture) return this.stats.encoder;
    const sup = await voiceSupport();
    if (!sup.microphone) throw new Error('this browser gives no microphone here (it needs https or localhost)');
    let kind = choice;
    if (kind === 'auto') kind = sup.webcodecs ? 'webcodecs' : sup.mediarecorder ? 'mediarecorder' : null;
    if (!kind || !sup[kind]) throw new Error(kind ? `${ENCODER_NAMES[kind]} is not available in this browser` : 'this browser can encode Opus neither with WebCodecs nor with MediaRecorder');
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, sampleRate: SAMPLE_RATE, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    if (this.closed) {
      for (const t of stream.getTracks()) t.stop();
      throw new Error('left the room');
    }
    const cap = { kind, stream, stops: [] };
    this.capture = cap;
    try {
      if (kind === 'webcodecs') await this._startWebCodecs(cap);
      else this._startMediaRecorder(cap);
    } catch (err) {
      this.stopTalking();
      throw err;
    }
    this.stats.encoder = kind;
    this.stats.talking = true;
    this._changed();
    return kind;
  }

  stopTalking() {
    const cap = this.capture;
    this.capture = null;
    if (!cap) return;
    for (const f of cap.stops.reverse()) {
      try {
        f();
      } catch {}
    }
    for (const t of cap.stream.getTracks()) t.stop();
    this.stats.talking = false;
    this.stats.encoder = null;
    this.stats.capture = null;
    this.stats.micRms = 0;
    this._changed();
  }

  get talking() {
    return !!this.capture;
  }

  setMuted(muted) {
    this.muted = !!muted;
  }

  _send(packet) {
    if (this.muted || !packet?.length) return;
    const ok = this.client.sendAudio(this.roomId, this.seq, packet);
    if (ok) {
      this.seq = seqNext(this.seq);
      this.stats.sent++;
    } else this.stats.notSent++;
    this._changed();
  }

  async _startWebCodecs(cap) {
    const encoder = new AudioEncoder({
      output: (chunk) => {
        const b = new Uint8Array(chunk.byteLength);
        chunk.copyTo(b);
        this._send(b);
      },
      error: (err) => {
        console.warn('voice: encoder', err);
        this.onError(err);
      },
    });
    encoder.configure(OPUS_ENC);
    cap.stops.push(() => encoder.state !== 'closed' && encoder.close());
    let frames = 0;
    const reframer = new Reframer(FRAME_SAMPLES, (samples) => {
      this.stats.micRms = rms(samples);
      if (encoder.state !== 'configured' || this.muted) return;
      const data = new AudioData({ format: 'f32-planar', sampleRate: SAMPLE_RATE, numberOfChannels: 1, numberOfFrames: FRAME_SAMPLES, timestamp: frames++ * FRAME_MS * 1000, data: samples });
      encoder.encode(data);
      data.close();
    });
    const [track] = cap.stream.getAudioTracks();
    if (typeof MediaStreamTrackProcessor === 'function') {
      this.stats.capture = 'MediaStreamTrackProcessor';
      const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
      cap.stops.push(() => reader.cancel().catch(() => {}));
      let resampler = null;
      (async () => {
        for (;;) {
          const { value, done } = await reader.read().catch(() => ({ done: true }));
          if (done || this.capture !== cap) {
            value?.close();
            return;
          }
          const n = value.numberOfFrames;
          const mono = new Float32Array(n);
          try {
            value.copyTo(mono, { planeIndex: 0, format: 'f32-planar' });
          } catch {
            const ch = value.numberOfChannels;
            const all = new Float32Array(n * ch);
            value.copyTo(all, { planeIndex: 0, format: 'f32' });
            for (let i = 0; i < n; i++) mono[i] = all[i * ch];
          }
          if (value.sampleRate !== SAMPLE_RATE) resampler ??= new LinearResampler(value.sampleRate, SAMPLE_RATE);
          value.close();
          reframer.push(resampler ? resampler.push(mono) : mono);
        }
      })();
    } else {
      // No track processor: a ScriptProcessorNode of a 48 kHz context (which resamples for us).
      const ctx = this.audio();
      if (!ctx) throw new Error('no Web Audio in this browser');
      this.stats.capture = 'ScriptProcessorNode';
      const source = ctx.createMediaStreamSource(cap.stream);
      const node = ctx.createScriptProcessor(1024, 1, 1);
      const sink = ctx.createGain();
      sink.gain.value = 0;
      const resampler = ctx.sampleRate !== SAMPLE_RATE ? new LinearResampler(ctx.sampleRate, SAMPLE_RATE) : null;
      node.onaudioprocess = (e) => {
        const x = new Float32Array(e.inputBuffer.getChannelData(0));
        reframer.push(resampler ? resampler.push(x) : x);
      };
      source.connect(node);
      node.connect(sink);
      sink.connect(ctx.destination);
      cap.stops.push(() => {
        node.onaudioprocess = null;
        source.disconnect();
        node.disconnect();
        sink.disconnect();
      });
    }
  }

  _startMediaRecorder(cap) {
    const rec = new MediaRecorder(cap.stream, { mimeType: MR_TYPE, audioBitsPerSecond: BITRATE });
    this.stats.capture = 'MediaRecorder';
    const demux = new WebmOpusDemuxer((packet) => {
      for (const p of splitOpusPacket(packet)) this._send(p);
    });
    let chain = Promise.resolve();
    rec.ondataavailable = (e) => {
      const blob = e.data;
      if (!blob?.size) return;
      // In order: each slice continues the WebM stream of the one before.
      chain = chain.then(async () => {
        const bytes = await blob.arrayBuffer();
        if (this.capture === cap) demux.push(bytes);
      }).catch((err) => console.warn('voice: recorder data', err));
    };
    rec.onerror = (e) => this.onError(e.error || new Error('MediaRecorder failed'));
    rec.start(FRAME_MS);
    cap.stops.push(() => rec.state !== 'inactive' && rec.stop());
  }

  // ------------------------------------------------------------ lifetime

  _changed() {
    if (this._changeTimer) return;
    this._changeTimer = setTimeout(() => {
      this._changeTimer = null;
      if (!this.closed) this.onChange(this.stats);
    }, 100);
  }

  close() {
    if (this.closed) return;
    this.stopTalking();
    this.closed = true;
    clearInterval(this._tick);
    clearTimeout(this._changeTimer);
    for (const no of [...this.speakers.keys()]) this.dropSpeaker(no);
    this.ctx?.close().catch(() => {});
    this.ctx = null;
  }
}
