// Pure unit tests of messageId(), the SDK's time-ordered client_msg_id.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { messageId } from '../src/index.js';

test('32 hex digits, the clock first', () => {
  const before = Date.now();
  const id = messageId();
  const after = Date.now();
  assert.match(id, /^[0-9a-f]{32}$/);
  const ms = parseInt(id.slice(0, 12), 16);
  assert.ok(ms >= before && ms <= after, `${ms} within [${before}, ${after}]`);
});

test('ids made later sort later, within one millisecond too, and never repeat', () => {
  const ids = Array.from({ length: 100000 }, () => messageId()); // > 65536 in some millisecond
  const sorted = [...ids].sort();
  assert.deepEqual(ids, sorted);
  assert.equal(new Set(ids).size, ids.length);
});

test('a clock that steps back does not reorder them', (t) => {
  const first = messageId();
  const real = Date.now;
  t.after(() => { Date.now = real; });
  Date.now = () => real() - 60_000;
  const later = messageId();
  assert.ok(later > first, `${later} > ${first}`);
});
