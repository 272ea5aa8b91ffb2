import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkCount, combine, combiningOp, divide, isReduceOp, mod, segment } from '../../protocol/reduce-ops.ts';

void test('segments of an array cover it exactly once, as even as integer division allows', () => {
  for (const length of [0, 1, 2, 7, 10, 10_007])
    for (const n of [1, 2, 3, 4, 5, 6]) {
      const parts = Array.from({ length: n }, (_, i) => segment(length, n, i));
      assert.equal(parts[0]![0], 0);
      assert.equal(parts[n - 1]![1], length);
      for (let i = 1; i < n; i++) assert.equal(parts[i]![0], parts[i - 1]![1]);
      const sizes = parts.map(([start, end]) => end - start);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${length} over ${n}: ${sizes.join(',')}`);
    }
});

void test('chunks: enough to cover the range, and one (empty) for an empty range', () => {
  assert.equal(chunkCount(0, 0, 4), 1);
  assert.equal(chunkCount(5, 5, 4), 1);
  assert.equal(chunkCount(0, 4, 4), 1);
  assert.equal(chunkCount(0, 5, 4), 2);
  assert.equal(chunkCount(3, 12, 4), 3);
});

void test('mod is never negative', () => {
  assert.deepEqual(
    [-5, -1, 0, 1, 4, 5].map((a) => mod(a, 4)),
    [3, 3, 0, 1, 0, 1],
  );
});

void test('combine: each op into the received chunk, and into mine too when storing (odd lengths cross the unrolled loop)', () => {
  const chunkOf = (): Float32Array => Float32Array.from([1, 5, -2, 8, 0.5, 3, -7]);
  const mineOf = (): Float32Array => Float32Array.from([2, 4, -3, 9, 0.25, 3, 6]);
  const cases = {
    sum: [3, 9, -5, 17, 0.75, 6, -1],
    max: [2, 5, -2, 9, 0.5, 3, 6],
    min: [1, 4, -3, 8, 0.25, 3, -7],
  } as const;
  for (const [op, want] of Object.entries(cases) as [keyof typeof cases, readonly number[]][]) {
    for (const store of [false, true]) {
      const chunk = chunkOf();
      const mine = mineOf();
      combine(op, chunk, mine, store);
      assert.deepEqual(Array.from(chunk), want, `${op}, store ${store}: chunk`);
      assert.deepEqual(Array.from(mine), store ? want : Array.from(mineOf()), `${op}, store ${store}: mine`);
    }
  }
});

void test('a mean combines as a sum, then divides; ops are known by name', () => {
  assert.equal(combiningOp('mean'), 'sum');
  assert.equal(combiningOp('max'), 'max');
  const values = Float32Array.from([3, 6, -9]);
  divide(values, 3);
  assert.deepEqual(Array.from(values), [1, 2, -3]);
  assert.ok(isReduceOp('min'));
  assert.ok(!isReduceOp('median'));
  assert.ok(!isReduceOp(undefined));
});
