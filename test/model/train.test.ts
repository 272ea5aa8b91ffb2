// The model must train on wasm and cpu: every op's gradient has to exist there (wasm lacks UnsortedSegmentSum,
// so a gather in the forward pass would fail here). A few Adam steps on a tiny copy task must lower the loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ENCODINGS } from '../../protocol/messages.ts';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';

const VOCAB = 10;
const SEP = 3;
// BOS x1..x4 SEP x1..x4 EOS, symbols 4..9, fixed so the test is deterministic.
function copyBatch(): { ids: number[][]; targets: number[][] } {
  const ids: number[][] = [];
  const targets: number[][] = [];
  for (let b = 0; b < 8; b++) {
    const xs = [0, 1, 2, 3].map((i) => 4 + ((b * 7 + i * 3 + ((b * i) % 5)) % 6));
    const seq = [1, ...xs, SEP, ...xs, 2];
    ids.push(seq.slice(0, -1));
    targets.push(seq.slice(1));
  }
  return { ids, targets };
}

function loss(model: Transformer, ids: tf.Tensor2D, targets: tf.Tensor2D, training: boolean, seed: number): tf.Scalar {
  const { logits } = model.forward(ids, training ? { training, dropoutSeed: seed } : { training });
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(targets, VOCAB)), -1))) as tf.Scalar;
}

for (const backend of ['cpu', 'wasm'] as const) {
  void test(`${backend}: variableGrads reaches every weight, and Adam lowers the copy-task loss for every encoding`, async () => {
    const choice = await selectBackend(backend);
    assert.equal(choice.name, backend);
    assert.equal(tf.getBackend(), backend);
    const { ids: idRows, targets: targetRows } = copyBatch();
    const ids = tf.tensor2d(idRows, undefined, 'int32');
    const targets = tf.tensor2d(targetRows, undefined, 'int32');
    for (const encoding of ENCODINGS) {
      const model = Transformer.create(
        { layers: 2, dModel: 16, heads: 2, ffnDim: 32, dropout: 0.1, maxLen: 16, vocabSize: VOCAB, encoding },
        11,
      );
      const { value, grads } = tf.variableGrads(() => loss(model, ids, targets, true, 0), model.variables);
      assert.ok(Number.isFinite(value.dataSync()[0]));
      for (const v of model.variables) {
        const g = grads[v.name];
        assert.ok(g !== undefined, `${backend}/${encoding}: no gradient for ${v.name}`);
        const norm = tf.tidy(() => tf.norm(g).dataSync()[0] ?? NaN);
        assert.ok(Number.isFinite(norm) && norm > 0, `${backend}/${encoding}: gradient of ${v.name} is ${norm}`);
      }
      tf.dispose([value, ...Object.values(grads)]);

      const before = tf.tidy(() => loss(model, ids, targets, false, 0).dataSync()[0] ?? NaN);
      const optimizer = tf.train.adam(0.01);
      for (let step = 0; step < 25; step++) {
        optimizer.minimize(() => loss(model, ids, targets, true, step), true, model.variables)?.dispose();
      }
      const after = tf.tidy(() => loss(model, ids, targets, false, 0).dataSync()[0] ?? NaN);
      assert.ok(after < before - 0.3, `${backend}/${encoding}: loss ${before.toFixed(3)} -> ${after.toFixed(3)}`);
      optimizer.dispose();
      model.dispose();
    }
    tf.dispose([ids, targets]);
  });
}
