// Construction, determinism, dropout, bad configs, and backend selection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
import type { TransformerConfig } from '../../src/model/transformer.ts';
import { ModelConfigError } from '../../src/model/errors.ts';

const base: TransformerConfig = {
  layers: 2,
  dModel: 16,
  heads: 4,
  ffnDim: 32,
  dropout: 0.2,
  maxLen: 16,
  vocabSize: 11,
  encoding: 't5',
};

void test('selectBackend: cpu when asked, idempotent, and a clear error for a backend that does not load', async () => {
  const lines: string[] = [];
  const first = await selectBackend('cpu', (l) => lines.push(l));
  assert.equal(first.name, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.ok(lines.some((l) => l.includes('cpu selected')));
  assert.equal(await selectBackend('cpu'), first);
  // The native CPU package is optional: either it loads and is chosen, or the error names it and why.
  try {
    const native = await selectBackend('tensorflow');
    assert.equal(native.name, 'tensorflow');
  } catch (error) {
    assert.ok(error instanceof Error && error.message.includes("'tensorflow'"), String(error));
    assert.equal((error as { retryable?: unknown }).retryable, true);
  }
  await selectBackend('cpu');
  assert.equal(tf.getBackend(), 'cpu');
});

void test('same seed gives the same weights; another seed does not; names are stable and unique', async () => {
  await selectBackend('cpu');
  const a = Transformer.create(base, 42);
  const b = Transformer.create(base, 42);
  const c = Transformer.create(base, 43);
  assert.deepEqual(a.variableNames, b.variableNames);
  assert.equal(new Set(a.variableNames).size, a.variableNames.length);
  assert.equal(new Set(a.variables.map((v) => v.name)).size, a.variables.length);
  assert.ok(
    !a.variables.some((v) => b.variables.some((w) => w.name === v.name)),
    'engine names collide between instances',
  );
  assert.ok(a.variableNames.includes('t5/relative_bias'));
  a.variables.forEach((v, i) => assert.deepEqual(v.dataSync(), b.variables[i]?.dataSync()));
  assert.notDeepEqual(a.variables[0]?.dataSync(), c.variables[0]?.dataSync());
  assert.equal(
    a.parameterCount(),
    a.variables.reduce((s, v) => s + v.size, 0),
  );
  // embedding + unembedding + final LN + per layer (LN1, qkv, out, LN2, ffn up/down) + T5 table.
  const perLayer = 2 * 16 + 16 * 48 + 16 * 16 + 16 + 2 * 16 + 16 * 32 + 32 + 32 * 16 + 16;
  assert.equal(a.parameterCount(), 11 * 16 * 2 + 2 * 16 + 2 * perLayer + 32 * 4);
  for (const m of [a, b, c]) m.dispose();
});

void test('dropout: same dropoutSeed, same output; another seed or eval mode differs', async () => {
  await selectBackend('cpu');
  const model = Transformer.create({ ...base, encoding: 'rope' }, 1);
  const ids = tf.tensor2d([[1, 4, 5, 6, 7, 2]], [1, 6], 'int32');
  const run = (training: boolean, seed?: number): Float32Array =>
    tf.tidy(
      () =>
        model
          .forward(ids, seed === undefined ? { training } : { training, dropoutSeed: seed })
          .logits.dataSync() as Float32Array,
    );
  assert.deepEqual(run(true, 5), run(true, 5));
  assert.notDeepEqual(run(true, 5), run(true, 6));
  assert.deepEqual(run(false), run(false));
  assert.notDeepEqual(run(false), run(true, 5));
  // A fresh model with the same seed replays the same masks (what an exact resume needs).
  const again = Transformer.create({ ...base, encoding: 'rope' }, 1);
  const replay = tf.tidy(() => again.forward(ids, { training: true, dropoutSeed: 5 }).logits.dataSync());
  assert.deepEqual(replay, run(true, 5));
  ids.dispose();
  model.dispose();
  again.dispose();
});

void test('forward returns per-layer attention that is causal and sums to one', async () => {
  await selectBackend('cpu');
  const model = Transformer.create({ ...base, encoding: 'alibi' }, 3);
  const ids = tf.tensor2d(
    [
      [1, 4, 5, 6, 7],
      [1, 8, 9, 10, 2],
    ],
    [2, 5],
    'int32',
  );
  const { logits, attention } = model.forward(ids, { training: false, collectAttention: true });
  assert.deepEqual(logits.shape, [2, 5, 11]);
  assert.equal(attention?.length, 2);
  for (const layer of attention ?? []) {
    assert.deepEqual(layer.shape, [2, 4, 5, 5]);
    for (const b of layer.arraySync()) {
      for (const h of b) {
        h.forEach((row, q) => {
          assert.ok(Math.abs(row.reduce((s, x) => s + x, 0) - 1) < 1e-5);
          row.forEach((p, k) => {
            if (k > q) assert.equal(p, 0);
          });
        });
      }
    }
  }
  tf.dispose([ids, logits, ...(attention ?? [])]);
  model.dispose();
});

void test('attentionLogitCap: no two keys of a row differ by more than e^(2 cap); 0 is the same as no cap', async () => {
  await selectBackend('cpu');
  const ids = tf.tensor2d([[1, 4, 5, 6, 7, 8, 9, 10, 3]], [1, 9], 'int32');
  /** Each row's largest max/min probability ratio over the keys it may see, across layers and heads. */
  const worstRatio = (cap: number | undefined): { ratio: number; logits: Float32Array } => {
    const model = Transformer.create(
      { ...base, dropout: 0, encoding: 'nope', ...(cap === undefined ? {} : { attentionLogitCap: cap }) },
      5,
    );
    // Large query and key weights: uncapped, the heads saturate.
    for (const v of model.variables) if (v.name.endsWith('w_qkv')) tf.tidy(() => v.assign(tf.mul(v, 400)));
    const { logits, attention = [] } = model.forward(ids, { training: false, collectAttention: true });
    let ratio = 1;
    for (const layer of attention) {
      for (const head of layer.arraySync()[0] ?? []) {
        head.forEach((row, q) => {
          const seen = row.slice(0, q + 1);
          ratio = Math.max(ratio, Math.max(...seen) / Math.min(...seen));
        });
      }
    }
    const values = logits.dataSync() as Float32Array;
    tf.dispose([logits, ...attention]);
    model.dispose();
    return { ratio, logits: values };
  };
  const uncapped = worstRatio(undefined);
  assert.ok(uncapped.ratio > Math.exp(2 * 3), `uncapped heads saturate (ratio ${uncapped.ratio})`);
  for (const cap of [0.5, 1, 3]) {
    const { ratio } = worstRatio(cap);
    assert.ok(ratio <= Math.exp(2 * cap) * 1.0001, `cap ${cap}: ratio ${ratio} > e^${2 * cap}`);
    assert.ok(ratio > Math.exp(2 * cap) * 0.5, `cap ${cap}: the heads still use most of the range (ratio ${ratio})`);
  }
  assert.deepEqual(worstRatio(0).logits, uncapped.logits);
  ids.dispose();
});

void test('bad configs fail with ModelConfigError naming the field; dispose frees every tensor', async () => {
  await selectBackend('cpu');
  const bad: [Partial<TransformerConfig>, string][] = [
    [{ dModel: 15 }, 'dModel'],
    [{ heads: 0 }, 'heads'],
    [{ layers: 1.5 }, 'layers'],
    [{ dropout: 1 }, 'dropout'],
    [{ encoding: 'xpos' as TransformerConfig['encoding'] }, 'encoding'],
    [{ encoding: 'rope', dModel: 12, heads: 4 }, 'heads'],
    [{ attentionLogitCap: -1 }, 'attentionLogitCap'],
    [{ attentionLogitCap: NaN }, 'attentionLogitCap'],
    [{ sinusoidalStride: 0 }, 'sinusoidalStride'],
    [{ sinusoidalStride: Infinity }, 'sinusoidalStride'],
    [{ encoding: 'mape', mapeMaxOffset: -1 }, 'mapeMaxOffset'],
    [{ encoding: 'mape', mapeMaxOffset: 2.5 }, 'mapeMaxOffset'],
    [{ encoding: 'mape', mapeOffset: 'no' as unknown as boolean }, 'mapeOffset'],
    [{ encoding: 'mape', mapeRoles: 0 as unknown as boolean }, 'mapeRoles'],
    [{ encoding: 'mape', mapeRelative: 'yes' as unknown as boolean }, 'mapeRelative'],
  ];
  for (const [patch, field] of bad) {
    assert.throws(
      () => Transformer.create({ ...base, ...patch }, 1),
      (e: unknown) => e instanceof ModelConfigError && e.field === field && !e.retryable,
    );
  }
  const before = tf.memory().numTensors;
  const model = Transformer.create({ ...base, encoding: 'diet' }, 1);
  const ids = tf.tensor2d([[1, 4, 5]], [1, 3], 'int32');
  tf.tidy(() => {
    model.forward(ids, { training: true, dropoutSeed: 1 });
  });
  ids.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => model.forward(ids, { training: false }), ModelConfigError);
});
