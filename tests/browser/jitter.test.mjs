// Unit tests (Node, no browser) of the web client's pure voice parts: web/src/jitter.js (seq
// wrap, jitter buffer, playout clock, Opus TOC durations and repacketizing, framing,
// resampling) and web/src/webm.js (Opus packets out of MediaRecorder's WebM stream).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  JitterBuffer,
  LinearResampler,
  PlayoutClock,
  Reframer,
  opusPacketMs,
  rms,
  seqAfter,
  seqDiff,
  seqNext,
  splitOpusPacket,
} from '../../web/src/jitter.js';
import { WebmOpusDemuxer } from '../../web/src/webm.js';

const bytes = (...a) => Uint8Array.from(a.flat());

describe('16-bit sequence numbers', () => {
  test('wrap', () => {
    assert.equal(seqNext(65535), 0);
    assert.equal(seqNext(7), 8);
    assert.equal(seqDiff(0, 65535), 1);
    assert.equal(seqDiff(65535, 0), -1);
    assert.equal(seqDiff(5, 65530), 11);
    assert.equal(seqDiff(100, 100), 0);
    assert.equal(seqDiff(32767, 0), 32767);
    assert.equal(seqDiff(32768, 0), -32768);
    assert.ok(seqAfter(2, 65534));
    assert.ok(!seqAfter(65534, 2));
  });
});

describe('Opus packets', () => {
  test('durations from the TOC byte', () => {
    assert.equal(opusPacketMs(bytes(0xf8, 1, 2)), 20); // CELT FB 20 ms, one frame
    assert.equal(opusPacketMs(bytes(0xf9, 1, 2)), 40); // two frames
    assert.equal(opusPacketMs(bytes(0xfb, 0x03, 1)), 60); // code 3, three frames (MediaRecorder's)
    assert.equal(opusPacketMs(bytes(0x18)), 60); // SILK NB 60 ms
    assert.equal(opusPacketMs(bytes(0x68, 0)), 20); // hybrid FB 20 ms
    assert.equal(opusPacketMs(bytes(0xe0)), 2.5); // CELT FB 2.5 ms
    assert.equal(opusPacketMs(bytes(0xfb)), 0); // code 3 without its count
    assert.equal(opusPacketMs(bytes(0xfb, 0x3f)), 0); // 63 x 20 ms: more than 120 ms
    assert.equal(opusPacketMs(new Uint8Array(0)), 0);
  });

  test('one frame comes back as it is', () => {
    const p = bytes(0xf8, 9, 9, 9);
    assert.deepEqual(splitOpusPacket(p), [p]);
  });

  test('code 1: two frames of one size', () => {
    const out = splitOpusPacket(bytes(0xf9, 1, 2, 3, 4, 5, 6));
    assert.deepEqual(out, [bytes(0xf8, 1, 2, 3), bytes(0xf8, 4, 5, 6)]);
    assert.deepEqual(splitOpusPacket(bytes(0xf9, 1, 2, 3)), []); // odd: malformed
  });

  test('code 2: two frames, the first one\'s length coded', () => {
    assert.deepEqual(splitOpusPacket(bytes(0xfa, 2, 7, 7, 8, 8, 8)), [bytes(0xf8, 7, 7), bytes(0xf8, 8, 8, 8)]);
    // A two-byte length: 252 + 4 * 1 = 256.
    const first = new Array(256).fill(5);
    const out = splitOpusPacket(bytes(0xfa, 252, 1, first, 6));
    assert.equal(out[0].length, 257);
    assert.deepEqual(out[1], bytes(0xf8, 6));
    assert.deepEqual(splitOpusPacket(bytes(0xfa, 9, 1)), []);
  });

  test('code 3 CBR (MediaRecorder: 60 ms = 3 x 20 ms)', () => {
    const out = splitOpusPacket(bytes(0xfb, 0x03, 1, 1, 2, 2, 3, 3));
    assert.deepEqual(out, [bytes(0xf8, 1, 1), bytes(0xf8, 2, 2), bytes(0xf8, 3, 3)]);
    for (const p of out) assert.equal(opusPacketMs(p), 20);
    assert.deepEqual(splitOpusPacket(bytes(0xfb, 0x03, 1, 1, 2, 2, 3)), []); // 5 bytes / 3
  });

  test('code 3 VBR with padding', () => {
    // v=1 p=1 M=3; padding 2; lengths 1 and 3; the last frame takes what is left (2); then 2 bytes of padding.
    const p = bytes(0xfb, 0xc3, 2, 1, 3, 0xa, 0xb, 0xb, 0xb, 0xc, 0xc, 0, 0);
    assert.deepEqual(splitOpusPacket(p), [bytes(0xf8, 0xa), bytes(0xf8, 0xb, 0xb, 0xb), bytes(0xf8, 0xc, 0xc)]);
    // Padding of 255 -> 254 and go on.
    const big = bytes(0xfb, 0x41, 255, 1, 7, new Array(255).fill(0));
    assert.deepEqual(splitOpusPacket(big), [bytes(0xf8, 7)]);
    assert.deepEqual(splitOpusPacket(bytes(0xfb, 0xc3, 9, 1, 1)), []); // padding beyond the end
    assert.deepEqual(splitOpusPacket(bytes(0xfb, 0x00)), []); // no frames
  });

  test('a DTX frame (zero bytes) is a TOC-only packet', () => {
    assert.deepEqual(splitOpusPacket(bytes(0xfb, 0x02)), [bytes(0xf8), bytes(0xf8)]);
  });
});

describe('JitterBuffer', () => {
  const drain = (jb, now) => {
    const out = [];
    for (let p; (p = jb.pull(now)); ) out.push(p.missing ? `-${p.seq}` : p.seq);
    return out;
  };

  test('fills to the target before playing, then plays in seq order', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    jb.push(11, 'b', 20, 0);
    jb.push(10, 'a', 20, 1);
    assert.equal(jb.pull(2), null, 'filling: 40 of 60 ms');
    jb.push(12, 'c', 20, 3);
    assert.deepEqual(jb.pull(3), { seq: 10, payload: 'a', ms: 20 });
    assert.deepEqual(drain(jb, 3), [11, 12]);
    assert.equal(jb.stats.played, 3);
  });

  test('a burst shorter than the target plays once it has waited the target', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    jb.push(1, 'x', 20, 1000);
    assert.equal(jb.pull(1030), null);
    assert.deepEqual(drain(jb, 1061), [1]);
  });

  test('order across the 16-bit wrap', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    for (const s of [0, 65534, 1, 65535]) jb.push(s, s, 20, 0);
    assert.deepEqual(drain(jb, 0), [65534, 65535, 0, 1]);
  });

  test('late and duplicate packets are dropped', () => {
    const jb = new JitterBuffer({ targetMs: 40 });
    jb.push(5, 5, 20, 0);
    assert.equal(jb.push(5, 5, 20, 0), 'duplicate');
    jb.push(6, 6, 20, 0);
    assert.deepEqual(drain(jb, 0), [5, 6]);
    assert.equal(jb.push(4, 4, 20, 1), 'late');
    assert.equal(jb.push(6, 6, 20, 1), 'late');
    assert.equal(jb.push(7, 7, 20, 1), 'queued');
    assert.equal(jb.stats.late, 2);
    assert.equal(jb.stats.duplicate, 1);
  });

  test('a packet missing at its turn is skipped (silence); it is late if it comes after', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    for (const s of [1, 2, 4, 5]) jb.push(s, s, 20, 0);
    assert.deepEqual(drain(jb, 0), [1, 2, '-3', 4, 5]);
    assert.equal(jb.stats.lost, 1);
    assert.equal(jb.push(3, 3, 20, 1), 'late');
  });

  test('a long gap is jumped over, not played as seconds of silence', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    for (const s of [1, 2, 3, 200, 201]) jb.push(s, s, 20, 0);
    assert.deepEqual(drain(jb, 0), [1, 2, 3, 200, 201]);
    assert.equal(jb.stats.lost, 196);
  });

  test('when it holds more than maxMs the oldest go', () => {
    const jb = new JitterBuffer({ targetMs: 60, maxMs: 100 });
    for (let s = 0; s < 8; s++) jb.push(s, s, 20, 0);
    assert.equal(jb.size, 5);
    assert.equal(jb.stats.overflow, 3);
    assert.deepEqual(drain(jb, 0), [3, 4, 5, 6, 7]);
    assert.equal(jb.push(2, 2, 20, 0), 'late');
  });

  test('run dry, it fills up again before playing on', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    for (const s of [1, 2, 3]) jb.push(s, s, 20, 0);
    assert.deepEqual(drain(jb, 0), [1, 2, 3]);
    jb.push(4, 4, 20, 500);
    assert.equal(jb.pull(510), null, 'filling again');
    jb.push(5, 5, 20, 520);
    jb.push(6, 6, 20, 540);
    assert.deepEqual(drain(jb, 540), [4, 5, 6]);
  });

  test('counts 60 ms packets by their duration', () => {
    const jb = new JitterBuffer({ targetMs: 60 });
    jb.push(9, 'long', 60, 0);
    assert.deepEqual(jb.pull(0), { seq: 9, payload: 'long', ms: 60 });
  });
});

describe('PlayoutClock', () => {
  test('contiguous, and restarted after an underrun', () => {
    const c = new PlayoutClock({ leadS: 0.01 });
    const a = c.place(20, 1.0);
    assert.equal(a, 1.01);
    assert.ok(Math.abs(c.place(20, 1.0) - 1.03) < 1e-9);
    assert.ok(Math.abs(c.place(20, 1.005) - 1.05) < 1e-9);
    assert.ok(Math.abs(c.ahead(1.0) - 0.07) < 1e-9);
    // The clock passed the end of what was scheduled: start again ahead of now.
    assert.equal(c.place(20, 2.0), 2.01);
    assert.equal(c.ahead(5), 0);
  });
});

describe('capture helpers', () => {
  test('Reframer cuts any chunks into 960-sample frames', () => {
    const frames = [];
    const r = new Reframer(960, (f, i) => frames.push([f.length, f[0], f[959], i]));
    const chunk = (n, v) => new Float32Array(n).fill(v);
    r.push(chunk(480, 1));
    assert.equal(frames.length, 0);
    r.push(chunk(480, 2));
    r.push(chunk(1000, 3));
    assert.deepEqual(frames, [[960, 1, 2, 0], [960, 3, 3, 1]]);
    r.push(chunk(920, 4)); // 40 threes were left over
    assert.deepEqual(frames[2], [960, 3, 4, 2]);
    assert.equal(frames.length, 3);
  });

  test('LinearResampler keeps the rate and the phase', () => {
    const same = new LinearResampler(48000, 48000);
    const x = Float32Array.from([1, 2, 3]);
    assert.equal(same.push(x), x);
    const r = new LinearResampler(44100, 48000);
    let n = 0;
    for (let i = 0; i < 100; i++) {
      const out = r.push(new Float32Array(441).fill(0.5));
      n += out.length;
      if (i > 0) for (const v of out) assert.ok(Math.abs(v - 0.5) < 1e-6);
    }
    assert.ok(Math.abs(n - 48000) <= 2, `${n} samples for one second`);
    const down = new LinearResampler(96000, 48000);
    assert.deepEqual([...down.push(Float32Array.from([0, 1, 2, 3, 4, 5]))], [0, 1, 3, 5]); // first one is the held sample
  });

  test('rms', () => {
    assert.equal(rms(new Float32Array(0)), 0);
    assert.equal(rms(Float32Array.from([0.5, -0.5])), 0.5);
  });
});

// ---- WebM: the elements MediaRecorder writes, built by hand.
function vintSize(n) {
  if (n < 0x7f) return [0x80 | n];
  if (n < 0x3fff) return [0x40 | (n >> 8), n & 0xff];
  return [0x10 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}
const idBytes = (id) => (id > 0xffffff ? [id >>> 24, (id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff] : id > 0xffff ? [id >> 16, (id >> 8) & 0xff, id & 0xff] : id > 0xff ? [id >> 8, id & 0xff] : [id]);
const el = (id, ...body) => {
  const b = body.flat();
  return [...idBytes(id), ...vintSize(b.length), ...b];
};
const unknown = (id) => [...idBytes(id), 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const text = (s) => [...Buffer.from(s)];
const simpleBlock = (track, rel, payload, flags = 0x80) => el(0xa3, [0x80 | track, (rel >> 8) & 0xff, rel & 0xff, flags, ...payload]);

function mediaRecorderLike() {
  const opusHead = [...text('OpusHead'), 1, 1, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0];
  return bytes(
    el(0x1a45dfa3, el(0x4286, [1]), el(0x4282, text('webm'))),
    unknown(0x18538067),
    el(0x1549a966, el(0x2ad7b1, [0x0f, 0x42, 0x40])), // Info, skipped
    el(0x1654ae6b, el(0xae, el(0xd7, [1]), el(0x86, text('A_OPUS')), el(0x63a2, opusHead))),
    unknown(0x1f43b675),
    el(0xe7, [0]),
    simpleBlock(1, 0, [0xfb, 0x03, 1, 1, 2, 2, 3, 3]),
    el(0xec, new Array(300).fill(0)), // Void: skipped (two-byte size)
    simpleBlock(1, 60, [0xfb, 0x03, 4, 4, 5, 5, 6, 6]),
    simpleBlock(2, 60, [0xf8, 9]), // another track: not ours
    unknown(0x1f43b675),
    el(0xe7, [0x01, 0x2c]), // cluster at 300 ms
    el(0xa0, el(0xa1, [0x81, 0, 20, 0x00, 0xf8, 7, 7])), // a BlockGroup's Block
    simpleBlock(1, 40, [0xf8, 1], 0x82), // laced: skipped, counted
  );
}

describe('WebmOpusDemuxer', () => {
  const run = (chunks) => {
    const got = [];
    const d = new WebmOpusDemuxer((p, m) => got.push([[...p], m.timecodeMs]));
    for (const c of chunks) d.push(c);
    return { got, d };
  };
  const expected = [
    [[0xfb, 0x03, 1, 1, 2, 2, 3, 3], 0],
    [[0xfb, 0x03, 4, 4, 5, 5, 6, 6], 60],
    [[0xf8, 7, 7], 320],
  ];

  test('the Opus track\'s packets, in one piece', () => {
    const { got, d } = run([mediaRecorderLike()]);
    assert.deepEqual(got, expected);
    assert.equal(d.track, 1);
    assert.equal(d.codec, 'A_OPUS');
    assert.equal(Buffer.from(d.opusHead.subarray(0, 8)).toString(), 'OpusHead');
    assert.equal(d.laced, 1);
    assert.equal(d.broken, false);
  });

  test('the same however the stream is sliced (MediaRecorder\'s slices fall anywhere)', () => {
    const all = mediaRecorderLike();
    const oneByOne = [];
    for (let i = 0; i < all.length; i++) oneByOne.push(all.subarray(i, i + 1));
    assert.deepEqual(run(oneByOne).got, expected);
    for (const size of [2, 3, 7, 13, 64, 301]) {
      const chunks = [];
      for (let i = 0; i < all.length; i += size) chunks.push(all.slice(i, i + size).buffer);
      assert.deepEqual(run(chunks).got, expected, `slices of ${size}`);
    }
  });

  test('packets split into 20 ms ones', () => {
    const { got } = run([mediaRecorderLike()]);
    const split = got.flatMap(([p]) => splitOpusPacket(Uint8Array.from(p)));
    assert.equal(split.length, 7);
    assert.ok(split.every((p) => opusPacketMs(p) === 20));
  });

  test('garbage stops it without throwing', () => {
    const { got, d } = run([bytes(0x00, 0x00, 0x00)]);
    assert.deepEqual(got, []);
    assert.equal(d.broken, true);
  });
});
