// The plain-number forms against values from the papers' own code, and the properties the encodings promise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  alibiSlopes,
  MAPE_FIXED_INDEX,
  mapeRelativeBucket,
  mapeRelativeBuckets,
  ropeRotate,
  sinusoidalTable,
  t5RelativeBucket,
} from '../../src/model/positional/reference.ts';

const close = (a: number, b: number, eps = 1e-9): boolean => Math.abs(a - b) <= eps;

void test('alibiSlopes(8) is 1/2 .. 1/256 (Press et al.)', () => {
  assert.deepEqual(alibiSlopes(8), [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]);
});

void test('alibiSlopes for non-powers of two follow the reference code (6 and 12 heads)', () => {
  // get_slopes(4) + get_slopes(8)[0::2][:2]
  assert.deepEqual(alibiSlopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]);
  const twelve = alibiSlopes(12);
  const eight = alibiSlopes(8);
  const sixteen = alibiSlopes(16);
  assert.equal(twelve.length, 12);
  assert.deepEqual(twelve.slice(0, 8), eight);
  assert.deepEqual(twelve.slice(8), [sixteen[0], sixteen[2], sixteen[4], sixteen[6]]);
  assert.ok(close(sixteen[0] ?? 0, Math.pow(2, -0.5)));
  assert.deepEqual(alibiSlopes(1), [Math.pow(2, -8)]);
  assert.throws(() => alibiSlopes(0), RangeError);
});

void test('t5RelativeBucket matches mesh-tensorflow values (32 buckets, max distance 128)', () => {
  // Unidirectional: 16 exact distances, then 16 log-spaced buckets up to 128; future keys share bucket 0.
  for (let d = 0; d < 16; d++) assert.equal(t5RelativeBucket(-d, false, 32, 128), d);
  assert.equal(t5RelativeBucket(5, false, 32, 128), 0);
  assert.equal(t5RelativeBucket(-16, false, 32, 128), 16);
  assert.equal(t5RelativeBucket(-20, false, 32, 128), 17); // 16 + trunc(log(20/16)/log(8)*16) = 16 + 1
  assert.equal(t5RelativeBucket(-64, false, 32, 128), 26); // 16 + trunc(log(4)/log(8)*16) = 16 + 10
  assert.equal(t5RelativeBucket(-127, false, 32, 128), 31);
  assert.equal(t5RelativeBucket(-128, false, 32, 128), 31);
  assert.equal(t5RelativeBucket(-1000, false, 32, 128), 31);
  // Bidirectional: keys after the query use the upper half.
  assert.equal(t5RelativeBucket(0, true, 32, 128), 0);
  assert.equal(t5RelativeBucket(-3, true, 32, 128), 3);
  assert.equal(t5RelativeBucket(3, true, 32, 128), 19);
  assert.equal(t5RelativeBucket(-16, true, 32, 128), 10); // 8 + trunc(log(2)/log(16)*8) = 8 + 2
  assert.equal(t5RelativeBucket(1000, true, 32, 128), 31);
});

void test('t5RelativeBucket is monotone in distance and stays in range', () => {
  let prev = -1;
  for (let d = 0; d <= 600; d++) {
    const b = t5RelativeBucket(-d, false, 32, 128);
    assert.ok(b >= prev, `bucket(${d}) = ${b} < bucket(${d - 1}) = ${prev}`);
    assert.ok(b >= 0 && b < 32);
    prev = b;
  }
  assert.equal(prev, 31);
});

void test('sinusoidalTable follows PE[p][2i] = sin(p/10000^(2i/d)), PE[p][2i+1] = cos', () => {
  const t = sinusoidalTable(50, 8);
  assert.equal(t.length, 50);
  assert.deepEqual(t[0], [0, 1, 0, 1, 0, 1, 0, 1]);
  const row = t[7] ?? [];
  assert.ok(close(row[0] ?? NaN, Math.sin(7)));
  assert.ok(close(row[1] ?? NaN, Math.cos(7)));
  assert.ok(close(row[4] ?? NaN, Math.sin(7 / Math.pow(10000, 4 / 8))));
  assert.ok(close(row[7] ?? NaN, Math.cos(7 / Math.pow(10000, 6 / 8))));
  // Odd widths keep the pattern: the last column is a sine.
  assert.ok(close(sinusoidalTable(4, 5)[3]?.[4] ?? NaN, Math.sin(3 / Math.pow(10000, 4 / 5))));
});

void test('ropeRotate: rotate-half pairs (i, i + d/2), preserves norms, and dot products depend only on the offset', () => {
  // Position 1, d = 4: angles 1 and 1/100 for pairs (0,2) and (1,3).
  const r = ropeRotate([1, 0, 0, 0], 1);
  assert.ok(
    close(r[0] ?? NaN, Math.cos(1)) &&
      close(r[2] ?? NaN, Math.sin(1)) &&
      close(r[1] ?? NaN, 0) &&
      close(r[3] ?? NaN, 0),
  );
  const r2 = ropeRotate([0, 1, 0, 0], 1);
  assert.ok(close(r2[1] ?? NaN, Math.cos(0.01)) && close(r2[3] ?? NaN, Math.sin(0.01)));
  assert.deepEqual(ropeRotate([0.3, -1, 2, 0.5], 0), [0.3, -1, 2, 0.5]);
  const q = [0.3, -1.2, 0.7, 2.0, -0.4, 1.1];
  const k = [1.5, 0.2, -0.9, 0.4, 0.8, -0.3];
  const dot = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * (b[i] ?? 0), 0);
  const norm = (a: number[]): number => Math.sqrt(dot(a, a));
  assert.ok(close(norm(ropeRotate(q, 37)), norm(q), 1e-12));
  const s1 = dot(ropeRotate(q, 10), ropeRotate(k, 7));
  const s2 = dot(ropeRotate(q, 103), ropeRotate(k, 100));
  assert.ok(close(s1, s2, 1e-9), `${s1} vs ${s2}`);
  assert.ok(!close(s1, dot(ropeRotate(q, 10), ropeRotate(k, 9)), 1e-6));
  assert.throws(() => ropeRotate([1, 2, 3], 1), RangeError);
});

void test('mapeRelativeBucket: 0 for a pair with the fixed index, else 1 + maxDistance + the clipped key - query', () => {
  assert.equal(mapeRelativeBuckets(4), 10);
  assert.equal(mapeRelativeBucket(MAPE_FIXED_INDEX, 3, 4), 0);
  assert.equal(mapeRelativeBucket(3, MAPE_FIXED_INDEX, 4), 0);
  // Equal significance is the middle bucket; one below (the carry's digit) the one before it.
  assert.equal(mapeRelativeBucket(3, 3, 4), 5);
  assert.equal(mapeRelativeBucket(3, 2, 4), 4);
  assert.equal(mapeRelativeBucket(2, 3, 4), 6);
  // Clipped: every difference past +-maxDistance shares its side's last bucket.
  assert.equal(mapeRelativeBucket(1, 5, 4), 9);
  assert.equal(mapeRelativeBucket(1, 40, 4), 9);
  assert.equal(mapeRelativeBucket(40, 1, 4), 1);
  for (let q = 1; q < 30; q++)
    for (let k = 1; k < 30; k++) {
      const b = mapeRelativeBucket(q, k, 4);
      assert.ok(b >= 1 && b < mapeRelativeBuckets(4), `${q},${k}: ${b}`);
      // The training offset moves both indices alike: the bucket stays.
      assert.equal(mapeRelativeBucket(q + 7, k + 7, 4), b);
    }
});
