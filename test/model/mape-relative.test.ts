// MAPE's relative variant (mapeRelative): the per-row attention bias against its plain-number form
// (mapeRelativeBucket in reference.ts), its independence from the training offset, and the KV cache against full
// forward passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { BOS, tokenizer } from '../../src/data/tokenizer.ts';
import {
  mapeIndices,
  mapeRelativeBucket,
  mapeRelativeBuckets,
  type MapeNumberOrder,
} from '../../src/model/positional/reference.ts';
import { createMape, MAPE_RELATIVE_MAX_DISTANCE } from '../../src/model/positional/mape.ts';
import { T5_BIAS_SCALE } from '../../src/model/positional/t5.ts';
import type { PositionalConfig } from '../../src/model/positional/types.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { distinctInit } from './distinct-init.ts';

await selectBackend('cpu');

const MSB: MapeNumberOrder = { operands: 'msb', answer: 'msb' };
const ANSWER_LSB: MapeNumberOrder = { operands: 'msb', answer: 'lsb' };
const config: PositionalConfig = { dModel: 6, heads: 2, headDim: 3, layers: 2, maxLen: 24 };
const near = (a: number, b: number): boolean => Math.abs(a - b) < 1e-5;

void test('mape rowBias[b][h][i][j] is T5_BIAS_SCALE * table[mapeRelativeBucket(index q, index k)][h], per row, in every layer', () => {
  const texts = ['12+345=0357', '9+9=18', '3*4+5=17'];
  const rows = texts.map((s) => [BOS, ...tokenizer.encode(s)]);
  const len = Math.min(...rows.map((r) => r.length));
  const tokens = rows.map((r) => r.slice(0, len));
  for (const order of [MSB, ANSWER_LSB]) {
    const pe = createMape({ ...config, mape: { maxOffset: 5, roles: true, order, relative: true } }, distinctInit(0.7));
    assert.deepEqual(pe.variableNames, ['mape/significance', 'mape/roles', 'mape/relative_bias']);
    const table = pe.variables[2]?.arraySync() as number[][];
    assert.equal(table.length, mapeRelativeBuckets(MAPE_RELATIVE_MAX_DISTANCE));
    assert.equal(pe.bias(0, 0, len, len), null, 'the shared bias hook stays empty: the bias is per row');
    // The full sequence, and a decoding step (one query over every key so far).
    for (const [qStart, qLen] of [
      [0, len],
      [len - 1, 1],
    ] as const) {
      for (const training of [false, true]) {
        const context = { tokens, training, seed: 3 };
        const [l0, l1] = [0, 1].map((layer) =>
          tf.tidy(() => pe.rowBias?.(layer, qStart, qLen, len, context)?.arraySync()),
        );
        assert.deepEqual(l0, l1, 'one table shared by the layers');
        assert.equal(l0?.length, tokens.length);
        tokens.forEach((row, b) => {
          const { index } = mapeIndices(row, order);
          for (let h = 0; h < config.heads; h++)
            for (let i = 0; i < qLen; i++)
              for (let j = 0; j < len; j++) {
                const bucket = mapeRelativeBucket(
                  index[qStart + i] as number,
                  index[j] as number,
                  MAPE_RELATIVE_MAX_DISTANCE,
                );
                const want = T5_BIAS_SCALE * (table[bucket]?.[h] ?? NaN);
                const got = l0?.[b]?.[h]?.[i]?.[j] ?? NaN;
                assert.ok(near(got, want), `${texts[b]} h${h} (${qStart + i},${j}): ${got} vs ${want}`);
              }
        });
      }
    }
    pe.dispose();
  }
  // Without the variant: no table, no bias.
  const plain = createMape({ ...config, mape: { maxOffset: 5, roles: true, order: MSB } }, distinctInit(0.7));
  assert.deepEqual(plain.variableNames, ['mape/significance', 'mape/roles']);
  assert.equal(plain.rowBias?.(0, 0, len, len, { tokens, training: false, seed: 0 }) ?? null, null);
  plain.dispose();
});

void test('mapeRelative: the model gains one [buckets, heads] table, its logits change, and the KV cache matches full passes', () => {
  const base = {
    layers: 2,
    dModel: 16,
    heads: 2,
    ffnDim: 32,
    dropout: 0,
    maxLen: 24,
    vocabSize: tokenizer.vocabSize,
    encoding: 'mape',
    mapeNumberOrder: ANSWER_LSB,
  } as const;
  const relative = Transformer.create({ ...base, mapeRelative: true }, 5);
  const plain = Transformer.create(base, 5);
  assert.equal(
    relative.parameterCount() - plain.parameterCount(),
    mapeRelativeBuckets(MAPE_RELATIVE_MAX_DISTANCE) * base.heads,
  );
  // A bias large enough to matter, different per bucket and head.
  const table = relative.positional.variables[relative.positional.variableNames.indexOf('mape/relative_bias')];
  assert.ok(table !== undefined);
  tf.tidy(() => table.assign(tf.randomNormal(table.shape, 0, 0.3, 'float32', 7)));
  const seq = [BOS, ...tokenizer.encode('123+45=861')];
  const full = tf.tidy(
    () => relative.forward(tf.tensor2d([seq], undefined, 'int32'), { training: false }).logits.arraySync()[0] ?? [],
  );
  const without = tf.tidy(
    () => plain.forward(tf.tensor2d([seq], undefined, 'int32'), { training: false }).logits.arraySync()[0] ?? [],
  );
  assert.notDeepEqual(full, without);
  // Prompt first, then one token at a time through the cache: every position's logits as in the full pass.
  const promptLength = seq.indexOf(tokenizer.encode('=')[0] as number) + 1;
  let cache = null as Parameters<typeof relative.forwardCached>[1];
  const stepwise: number[][] = [];
  for (const piece of [seq.slice(0, promptLength), ...seq.slice(promptLength).map((id) => [id])]) {
    const out = relative.forwardCached(tf.tensor2d([piece], undefined, 'int32'), cache);
    if (cache !== null) for (const { k, v } of cache.layers) tf.dispose([k, v]);
    cache = out.cache;
    stepwise.push(...((out.logits.arraySync()[0] ?? []) as number[][]));
    out.logits.dispose();
  }
  if (cache !== null) for (const { k, v } of cache.layers) tf.dispose([k, v]);
  assert.equal(stepwise.length, full.length);
  stepwise.forEach((row, t) =>
    row.forEach((v, k) => assert.ok(Math.abs(v - (full[t]?.[k] ?? NaN)) < 1e-4, `position ${t} logit ${k}`)),
  );
  relative.dispose();
  plain.dispose();
});
