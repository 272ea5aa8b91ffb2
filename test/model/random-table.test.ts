// The control bench's --table random diagnostic: fixed random rows take the sinusoidal table's place, position by
// position, in full passes and in cached decoding alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useRandomTable } from '../../bench/model.ts';
import { RANDOM_TABLE_SEED, randomTable } from '../../bench/positions.ts';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer, disposeKvCache, type KvCache } from '../../src/model/transformer.ts';

void test('useRandomTable: rows of randomTable at the right positions, the table RMS, and decoding that agrees', async () => {
  await selectBackend('cpu');
  const config = { layers: 2, dModel: 16, heads: 4, ffnDim: 32, dropout: 0, maxLen: 12, vocabSize: 11 };
  const model = Transformer.create({ ...config, encoding: 'sinusoidal' }, 3);
  const ids = tf.tensor2d([[1, 4, 5, 6, 7, 8, 9, 10]], [1, 8], 'int32');
  const before = model.forward(ids, { training: false }).logits;
  const table = useRandomTable(model);

  const rows = randomTable(12, 16, Math.SQRT1_2, RANDOM_TABLE_SEED);
  const embedded = tf.tidy(() => model.positional.embed(tf.zeros([1, 5, 16]), 3).arraySync()[0] as number[][]);
  embedded.forEach((row, i) =>
    row.forEach((x, j) => assert.ok(Math.abs(x - rows[3 + i]![j]!) < 1e-6, `position ${3 + i}, dim ${j}`)),
  );
  const all = rows.flat();
  const rms = Math.sqrt(all.reduce((s, x) => s + x * x, 0) / all.length);
  assert.ok(Math.abs(rms - Math.SQRT1_2) < 0.05, `RMS ${rms}, the table's is 1/sqrt(2)`);

  // The model now sees other positions, and a token-by-token cached pass reads the same rows as a full pass.
  const full = model.forward(ids, { training: false }).logits;
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(full, before))).dataSync()[0]!) > 1e-3, 'the table changed nothing');
  let cache: KvCache | null = null;
  const last: tf.Tensor[] = [];
  for (let t = 0; t < 8; t++) {
    const step = tf.slice(ids, [0, t], [1, 1]);
    const out = model.forwardCached(step, cache);
    if (cache !== null) disposeKvCache(cache);
    cache = out.cache;
    last.push(out.logits);
    step.dispose();
  }
  const stepwise = tf.concat(last, 1);
  const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(stepwise, full))).dataSync()[0]!);
  assert.ok(gap < 1e-4, `cached decoding differs from the full pass by ${gap}`);
  tf.dispose([ids, before, full, stepwise, ...last]);
  if (cache !== null) disposeKvCache(cache);
  table.dispose();
  model.dispose();
});
