// Pure unit tests of the (conversation_id, seq) duplicate filter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeqTracker } from '../src/index.js';

test('in-order seqs are new once, then duplicates', () => {
  const t = new SeqTracker();
  for (let s = 1; s <= 5; s++) assert.equal(t.accept('1', s), true);
  for (let s = 1; s <= 5; s++) assert.equal(t.accept('1', s), false);
  assert.equal(t.floor('1'), 5);
});

test('conversations are independent; ids may be numbers or strings', () => {
  const t = new SeqTracker();
  assert.equal(t.accept('1', 1), true);
  assert.equal(t.accept(2, 1), true);
  assert.equal(t.accept('2', 1), false);
  assert.deepEqual(t.snapshot(), { 1: 1, 2: 1 });
});

test('out of order: the floor waits for the hole, duplicates above it are still caught', () => {
  const t = new SeqTracker();
  assert.equal(t.accept('c', 1), true);
  assert.equal(t.accept('c', 3), true);
  assert.equal(t.accept('c', 4), true);
  assert.equal(t.accept('c', 3), false);
  assert.equal(t.floor('c'), 1, 'a heartbeat must not claim seq 2');
  assert.equal(t.seen('c', 2), false);
  assert.equal(t.accept('c', 2), true);
  assert.equal(t.floor('c'), 4);
  assert.equal(t.accept('c', 2), false);
});

test('initFloor: only for an unknown conversation; below it everything is a duplicate', () => {
  const t = new SeqTracker();
  assert.equal(t.initFloor('c', 10), true);
  assert.equal(t.initFloor('c', 3), false);
  assert.equal(t.accept('c', 10), false);
  assert.equal(t.accept('c', 11), true);
  assert.equal(t.floor('c'), 11);
});

test('setFloor raises, never lowers, and absorbs seqs above', () => {
  const t = new SeqTracker();
  t.accept('c', 1);
  t.accept('c', 5);
  t.accept('c', 6);
  t.setFloor('c', 4);
  assert.equal(t.floor('c'), 6);
  t.setFloor('c', 2);
  assert.equal(t.floor('c'), 6);
});

test('bad seqs are refused', () => {
  const t = new SeqTracker();
  assert.equal(t.accept('c', 0), false);
  assert.equal(t.accept('c', -1), false);
  assert.equal(t.accept('c', 1.5), false);
  assert.equal(t.accept('c', undefined), false);
});

test('the set above the floor is bounded', () => {
  const t = new SeqTracker({ maxPending: 100 });
  t.accept('c', 1);
  for (let s = 3; s <= 103; s++) t.accept('c', s); // 101 above a hole at 2
  assert.equal(t.floor('c'), 103, 'the hole is given up on');
  assert.equal(t.accept('c', 2), false);
  assert.equal(t.accept('c', 104), true);
});

test('snapshot: only given conversations, only floors above 0; forget drops one', () => {
  const t = new SeqTracker();
  t.accept('a', 1);
  t.accept('b', 2); // floor stays 0
  t.accept('c', 1);
  assert.deepEqual(t.snapshot(['a', 'b', 'x']), { a: 1 });
  t.forget('a');
  assert.equal(t.has('a'), false);
  assert.deepEqual(t.snapshot(), { c: 1 });
});

test('lowestAbove: the top of the hole below what was seen', () => {
  const t = new SeqTracker();
  assert.equal(t.lowestAbove('n'), 0, 'unknown conversation');
  t.accept('n', 7); // e.g. the first live message of a conversation joined at seq 6
  t.accept('n', 9);
  assert.equal(t.floor('n'), 0);
  assert.equal(t.lowestAbove('n'), 7, 'seqs 1..6 are missing');
  for (let s = 1; s <= 6; s++) t.accept('n', s);
  assert.equal(t.floor('n'), 7);
  assert.equal(t.lowestAbove('n'), 9);
  t.accept('n', 8);
  assert.equal(t.lowestAbove('n'), 0, 'no hole left');
});
