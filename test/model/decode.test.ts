// Greedy decoding with the KV cache must give exactly what argmax over full forward passes gives, for prompts of
// mixed lengths in one call and for every encoding (the cache path passes absolute positions to each encoding).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ENCODINGS } from '../../protocol/messages.ts';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { attentionMaps, greedyDecode } from '../../src/model/decode.ts';
import { ModelInputError } from '../../src/model/errors.ts';
import { Rng } from '../../src/data/rng.ts';

const VOCAB = 9;
const EOS = 2;

/** A tiny model with large random weights, so greedy outputs vary (a fresh init is near-uniform). */
function randomModel(
  encoding: (typeof ENCODINGS)[number],
  seed: number,
  attentionLogitCap = 0,
  sinusoidalStride = 1,
): Transformer {
  const model = Transformer.create(
    {
      layers: 2,
      dModel: 16,
      heads: 2,
      ffnDim: 32,
      dropout: 0.1,
      maxLen: 24,
      vocabSize: VOCAB,
      encoding,
      attentionLogitCap,
      sinusoidalStride,
    },
    seed,
  );
  const rng = new Rng(seed);
  for (const v of model.variables) {
    // Matrices only, at a scale where activations stay O(1); LayerNorm gains and biases keep their init.
    if (v.rank < 2) continue;
    const scale = 3 / Math.sqrt(v.shape[0] ?? 1);
    const values = Float32Array.from({ length: v.size }, () => (rng.next() - 0.5) * 2 * scale);
    tf.tidy(() => v.assign(tf.tensor(values, v.shape)));
  }
  return model;
}

/** The slow, obviously right way: a full forward pass per new token. */
function naiveDecode(model: Transformer, prompt: number[], maxNewTokens: number): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < maxNewTokens; i++) {
    const next = tf.tidy(() => {
      const { logits } = model.forward(tf.tensor2d([seq], undefined, 'int32'), { training: false });
      return tf.argMax(tf.squeeze(tf.slice(logits, [0, seq.length - 1, 0], [1, 1, VOCAB])), -1).dataSync()[0] ?? -1;
    });
    if (next === EOS) break;
    out.push(next);
    seq.push(next);
  }
  return out;
}

const prompts = [
  [1, 4, 5],
  [1, 6, 7, 8, 3],
  [1, 5],
  [1, 8, 8, 4, 6, 7, 5],
  [1, 7, 3],
  [1, 4],
  [1, 3, 3, 3, 3],
  [1, 6, 6, 6],
];

void test('greedyDecode (KV cache, grouped by length) equals argmax of full forward passes, every encoding', async () => {
  await selectBackend('cpu');
  let sawEos = false;
  let sawFull = false;
  const distinct = new Set<string>();
  // Every encoding, two with capped attention logits (the cap acts inside the cached path too), and sinusoidal
  // reading every other row of its table (the cached path's offsets must be strided alike).
  const cases = [
    ...ENCODINGS.map((e) => [e, 0, 1] as const),
    ['sinusoidal', 1.5, 1] as const,
    ['rope', 1.5, 1] as const,
    ['sinusoidal', 0, 2] as const,
  ];
  for (const [encoding, cap, stride] of cases) {
    const model = randomModel(encoding, 5, cap, stride);
    // The first call fills the model's bounded constant caches (masks, position tables); a repeat adds nothing.
    const got = greedyDecode(model, prompts, { maxNewTokens: 10, eosId: EOS, batchSize: 2 });
    const before = tf.memory().numTensors;
    assert.deepEqual(greedyDecode(model, prompts, { maxNewTokens: 10, eosId: EOS, batchSize: 2 }), got);
    assert.equal(tf.memory().numTensors, before, `${encoding}: decode leaked tensors`);
    assert.equal(got.length, prompts.length);
    prompts.forEach((prompt, i) => {
      const want = naiveDecode(model, prompt, 10);
      assert.deepEqual(got[i], want, `${encoding}, prompt ${i}`);
      assert.ok(!(got[i] ?? []).includes(EOS));
      if (want.length < 10) sawEos = true;
      if (want.length === 10) sawFull = true;
      distinct.add(want.join(','));
    });
    // Batch size does not change the answer.
    assert.deepEqual(greedyDecode(model, prompts, { maxNewTokens: 10, eosId: EOS }), got);
    model.dispose();
  }
  // The comparison is not vacuous: some rows stop at EOS, some run to the limit, and outputs differ.
  assert.ok(sawEos && sawFull, `eos ${sawEos}, full ${sawFull}`);
  assert.ok(distinct.size > 10, `only ${distinct.size} distinct outputs`);
});

void test('greedyDecode rejects bad prompts with a ModelInputError naming the prompt and token', async () => {
  await selectBackend('cpu');
  const model = randomModel('nope', 1);
  assert.throws(
    () =>
      greedyDecode(
        model,
        [
          [1, 4],
          [1, 99],
        ],
        { maxNewTokens: 3, eosId: EOS },
      ),
    (e: unknown) => e instanceof ModelInputError && /prompt 1, token 1/.test(e.message),
  );
  assert.throws(() => greedyDecode(model, [[]], { maxNewTokens: 3, eosId: EOS }), ModelInputError);
  assert.throws(() => greedyDecode(model, [[1]], { maxNewTokens: -1, eosId: EOS }), ModelInputError);
  assert.deepEqual(greedyDecode(model, [[1, 4]], { maxNewTokens: 0, eosId: EOS }), [[]]);
  assert.deepEqual(greedyDecode(model, [], { maxNewTokens: 3, eosId: EOS }), []);
  model.dispose();
});

void test('attentionMaps: [layer][head][query][key], causal rows that sum to one, equal to forward', async () => {
  await selectBackend('cpu');
  const model = randomModel('t5', 2);
  const ids = [1, 4, 5, 6, 3, 7];
  const maps = attentionMaps(model, ids);
  assert.equal(maps.length, 2);
  const reference = tf.tidy(() =>
    model
      .forward(tf.tensor2d([ids], undefined, 'int32'), { training: false, collectAttention: true })
      .attention?.map((a) => a.arraySync()[0]),
  );
  maps.forEach((layer, l) => {
    assert.equal(layer.length, 2);
    layer.forEach((head, h) => {
      assert.equal(head.length, ids.length);
      head.forEach((row, q) => {
        assert.equal(row.length, ids.length);
        assert.ok(Math.abs(row.reduce((s, x) => s + x, 0) - 1) < 1e-5);
        row.forEach((p, k) => {
          if (k > q) assert.equal(p, 0);
          assert.ok(Math.abs(p - (reference?.[l]?.[h]?.[q]?.[k] ?? NaN)) < 1e-6);
        });
      });
    });
  });
  model.dispose();
});
