// The tensor encodings against reference.ts, and the properties each one promises.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { createPositionalEncoding } from '../../src/model/positional/index.ts';
import type { PositionalConfig } from '../../src/model/positional/types.ts';
import { distinctInit } from './distinct-init.ts';
import { alibiSlopes, ropeRotate, sinusoidalTable, t5RelativeBucket } from '../../src/model/positional/reference.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { T5_BIAS_SCALE } from '../../src/model/positional/t5.ts';

await selectBackend('cpu');

// Deterministic, distinct values so a wrong index shows up.
const init = distinctInit(1.7);
const config: PositionalConfig = { dModel: 8, heads: 2, headDim: 4, layers: 2, maxLen: 12 };
const near = (a: number, b: number, eps = 1e-5): boolean => Math.abs(a - b) <= eps;

void test('sinusoidal embed adds exactly sinusoidalTable, also at an offset and past maxLen', () => {
  const pe = createPositionalEncoding('sinusoidal', config, init);
  const table = sinusoidalTable(20, 8);
  for (const [start, len] of [
    [0, 12],
    [5, 3],
    [15, 5],
  ] as const) {
    const out = tf.tidy(() => pe.embed(tf.zeros([2, len, 8]) as tf.Tensor3D, start).arraySync() as number[][][]);
    for (const row of out)
      row.forEach((v, p) =>
        v.forEach((x, j) => assert.ok(near(x, table[start + p]?.[j] ?? NaN), `p=${start + p} j=${j}`)),
      );
  }
  pe.dispose();
});

void test('sinusoidalStride k encodes position p as the table row p * k, at any offset', () => {
  const table = sinusoidalTable(40, 8);
  for (const stride of [1, 2, 3]) {
    const pe = createPositionalEncoding('sinusoidal', { ...config, sinusoidalStride: stride }, init);
    for (const [start, len] of [
      [0, 9],
      [6, 4],
    ] as const) {
      const out = tf.tidy(() => pe.embed(tf.zeros([1, len, 8]) as tf.Tensor3D, start).arraySync() as number[][][]);
      out[0]!.forEach((v, p) =>
        v.forEach((x, j) => assert.ok(near(x, table[(start + p) * stride]?.[j] ?? NaN), `k=${stride} p=${start + p}`)),
      );
    }
    pe.dispose();
  }
});

void test('rope rotate matches ropeRotate per head and position', () => {
  const pe = createPositionalEncoding('rope', config, init);
  const values = Array.from({ length: 2 * 2 * 5 * 4 }, (_, i) => Math.cos(i * 0.37) * 2);
  const x = tf.tensor4d(values, [2, 2, 5, 4]);
  for (const start of [0, 9]) {
    const got = tf.tidy(() => pe.rotate(x, start).arraySync());
    const want = (x.arraySync() as number[][][][]).map((b) =>
      b.map((h) => h.map((vec, p) => ropeRotate(vec, start + p))),
    );
    got.forEach((b, bi) =>
      b.forEach((h, hi) =>
        h.forEach((vec, p) => vec.forEach((v, j) => assert.ok(near(v, want[bi]?.[hi]?.[p]?.[j] ?? NaN)))),
      ),
    );
  }
  x.dispose();
  pe.dispose();
});

void test('rope: q·k scores depend only on the query-key offset', () => {
  const pe = createPositionalEncoding('rope', config, init);
  // The same q and k vector at every position: score(i, j) must be a function of i - j alone.
  const vec = [0.5, -1, 0.25, 2];
  const seq = 10;
  const scores = tf.tidy(() => {
    const x = tf.tile(tf.tensor4d(vec, [1, 1, 1, 4]), [1, 1, seq, 1]) as tf.Tensor4D;
    return (tf.matMul(pe.rotate(x, 0), pe.rotate(x, 0), false, true).arraySync() as number[][][][])[0]?.[0] ?? [];
  });
  for (let i = 0; i < seq; i++) {
    for (let j = 0; j < seq; j++) {
      const base = scores[i - j >= 0 ? i - j : 0]?.[i - j >= 0 ? 0 : j - i] ?? NaN;
      assert.ok(
        near(scores[i]?.[j] ?? NaN, base, 1e-4),
        `score(${i},${j}) = ${scores[i]?.[j]} vs offset ${i - j}: ${base}`,
      );
    }
  }
  // And it is not constant: position really matters.
  assert.ok(!near(scores[0]?.[0] ?? 0, scores[5]?.[0] ?? 0, 1e-3));
  pe.dispose();
});

void test('alibi bias is -slope * distance, linear in distance, per head', () => {
  const heads = 6;
  const pe = createPositionalEncoding('alibi', { ...config, heads, dModel: 24 }, init);
  const slopes = alibiSlopes(heads);
  const bias = tf.tidy(() => pe.bias(0, 0, 9, 9)?.arraySync() ?? []);
  assert.equal(bias.length, heads);
  bias.forEach((h, hi) => {
    for (let i = 0; i < 9; i++) {
      for (let j = 0; j <= i; j++)
        assert.ok(near(h[i]?.[j] ?? NaN, -(slopes[hi] ?? NaN) * (i - j)), `head ${hi} (${i},${j})`);
      // Linear: equal steps in distance give equal steps in the penalty.
      for (let j = 2; j <= i; j++)
        assert.ok(near((h[i]?.[j] ?? 0) - (h[i]?.[j - 1] ?? 0), (h[i]?.[j - 1] ?? 0) - (h[i]?.[j - 2] ?? 0)));
    }
  });
  // A decoding step (one query at position 8 over 9 keys) sees the same row.
  const step = tf.tidy(() => pe.bias(1, 8, 1, 9)?.arraySync() ?? []);
  step.forEach((h, hi) => h[0]?.forEach((v, j) => assert.ok(near(v, bias[hi]?.[8]?.[j] ?? NaN))));
  pe.dispose();
});

void test('t5 bias looks up the learned table (stored at 1/T5_BIAS_SCALE) by t5RelativeBucket, shared across layers', () => {
  const pe = createPositionalEncoding('t5', config, init);
  assert.equal(pe.variables.length, 1);
  const table = pe.variables[0]?.arraySync() as number[][];
  for (const [qStart, qLen, kLen] of [
    [0, 7, 7],
    [40, 1, 41],
  ] as const) {
    const b0 = tf.tidy(() => pe.bias(0, qStart, qLen, kLen)?.arraySync() ?? []);
    const b1 = tf.tidy(() => pe.bias(1, qStart, qLen, kLen)?.arraySync() ?? []);
    assert.deepEqual(b0, b1);
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < qLen; i++) {
        for (let j = 0; j < kLen; j++) {
          const bucket = t5RelativeBucket(j - (qStart + i), false, 32, 128);
          assert.ok(
            near(b0[h]?.[i]?.[j] ?? NaN, T5_BIAS_SCALE * (table[bucket]?.[h] ?? NaN)),
            `h${h} (${qStart + i},${j})`,
          );
        }
      }
    }
  }
  pe.dispose();
});

void test('diet bias is the per-layer, per-head bilinear positional term, clamped past maxLen', () => {
  const pe = createPositionalEncoding('diet', config, init);
  assert.equal(pe.variables.length, 4);
  const [pq, pk] = pe.variables.map((v) => v.arraySync() as number[][]);
  const b0 = tf.tidy(() => pe.bias(0, 0, 12, 12)?.arraySync() ?? []);
  const b1 = tf.tidy(() => pe.bias(1, 0, 12, 12)?.arraySync() ?? []);
  assert.notDeepEqual(b0, b1);
  for (let h = 0; h < 2; h++) {
    for (const [i, j] of [
      [0, 0],
      [5, 2],
      [11, 11],
      [3, 7],
    ] as const) {
      let want = 0;
      for (let d = 0; d < 4; d++) want += (pq?.[i]?.[h * 4 + d] ?? NaN) * (pk?.[j]?.[h * 4 + d] ?? NaN);
      assert.ok(near(b0[h]?.[i]?.[j] ?? NaN, want / 2, 1e-4));
    }
  }
  const past = tf.tidy(() => pe.bias(0, 20, 1, 21)?.arraySync() ?? []);
  assert.ok(near(past[0]?.[0]?.[20] ?? NaN, b0[0]?.[11]?.[11] ?? NaN, 1e-4));
  pe.dispose();
});

void test('every encoding is causal: the output at position t ignores later tokens', () => {
  for (const encoding of ['sinusoidal', 'rope', 'alibi', 'diet', 't5', 'nope'] as const) {
    const model = Transformer.create(
      { layers: 2, dModel: 16, heads: 2, ffnDim: 32, dropout: 0, maxLen: 16, vocabSize: 12, encoding },
      7,
    );
    const a = tf.tensor2d([[1, 4, 5, 6, 7, 8, 9, 10]], [1, 8], 'int32');
    const b = tf.tensor2d([[1, 4, 5, 6, 11, 3, 4, 4]], [1, 8], 'int32');
    const la = tf.tidy(() => model.forward(a, { training: false }).logits.arraySync()[0] ?? []);
    const lb = tf.tidy(() => model.forward(b, { training: false }).logits.arraySync()[0] ?? []);
    for (let t = 0; t < 4; t++)
      la[t]?.forEach((v, k) => assert.ok(near(v, lb[t]?.[k] ?? NaN, 1e-5), `${encoding}: position ${t} changed`));
    // The changed tokens do change later outputs (the check above is not vacuous).
    assert.ok(
      la[5]?.some((v, k) => !near(v, lb[5]?.[k] ?? NaN, 1e-5)),
      `${encoding}: later positions did not change`,
    );
    tf.dispose([a, b]);
    model.dispose();
  }
});
