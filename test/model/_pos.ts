import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { Rng } from '../../src/data/rng.ts';
import type { EncodingName } from '../../protocol/messages.ts';
await selectBackend('wasm');
const V = 14, L = 12, B = 32;
for (const encoding of (process.argv[2] ?? 'rope').split(',') as EncodingName[]) {
  const model = Transformer.create({ layers: 2, dModel: 32, heads: 4, ffnDim: 64, dropout: 0, maxLen: 16, vocabSize: V, encoding }, 1);
  const opt = tf.train.adam(3e-3);
  const rng = new Rng(2);
  for (let step = 1; step <= 300; step++) {
    const ids = Array.from({ length: B }, () => Array.from({ length: L }, () => rng.int(4, V - 1)));
    // target at t: the token two positions back (position-only rule); first two positions masked.
    const tg = ids.map((r) => r.map((_, t) => (t >= 2 ? r[t - 2]! : 0)));
    const w = ids.map((r) => r.map((_, t) => (t >= 2 ? 1 : 0)));
    const [i, g, m] = [tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(tg, undefined, 'int32'), tf.tensor2d(w)];
    const loss = opt.minimize(() => {
      const { logits } = model.forward(i, { training: true });
      const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(g, V)), -1));
      return tf.div(tf.sum(tf.mul(nll, m)), tf.sum(m)) as tf.Scalar;
    }, true, model.variables);
    if (step % 50 === 0) console.log(encoding, step, loss?.dataSync()[0]?.toFixed(3));
    tf.dispose([i, g, m]); loss?.dispose();
  }
  model.dispose();
}
