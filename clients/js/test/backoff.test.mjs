// Pure unit tests of the reconnect backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../src/index.js';

test('grows exponentially up to the cap (no jitter)', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 });
  assert.deepEqual(Array.from({ length: 7 }, () => b.next()), [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.equal(b.attempt, 7);
});

test('reset starts again from initialMs', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 100);
});

test('jitter keeps each delay within [base * (1 - jitter), base]', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 10000, jitter: 0.5 });
  for (let i = 0; i < 200; i++) {
    const base = b.base();
    const d = b.next();
    assert.ok(d >= base * 0.5 - 1 && d <= base, `attempt ${i}: ${d} not in [${base / 2}, ${base}]`);
    if (i % 10 === 9) b.reset();
  }
});

test('jitter spreads clients that failed together', () => {
  const delays = new Set();
  for (let i = 0; i < 50; i++) {
    const b = new Backoff({ initialMs: 1000, maxMs: 10000, jitter: 1 });
    b.next();
    delays.add(b.next());
  }
  assert.ok(delays.size > 30, `only ${delays.size} distinct delays`);
});

test('the random source is injectable (deterministic tests)', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 1, random: () => 0.25 });
  assert.equal(b.next(), 75);
  assert.equal(b.next(), 150);
});

test('bad options are refused', () => {
  assert.throws(() => new Backoff({ initialMs: 0 }), RangeError);
  assert.throws(() => new Backoff({ initialMs: 100, maxMs: 50 }), RangeError);
  assert.throws(() => new Backoff({ jitter: 2 }), RangeError);
});
