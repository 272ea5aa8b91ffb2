import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
const backend = (process.argv[2] ?? 'wasm') as 'cpu' | 'wasm';
await selectBackend(backend);
const V = 100,
  batch = 64,
  seq = 16;
const model = Transformer.create(
  {
    layers: 2,
    dModel: 64,
    heads: 4,
    ffnDim: 256,
    dropout: 0,
    maxLen: 64,
    vocabSize: V,
    encoding: (process.argv[3] ?? 'nope') as 'nope',
  },
  1,
);
const ids = tf.tensor2d(
  Array.from({ length: batch }, (_, b) => Array.from({ length: seq }, (_, i) => 4 + ((b * 7 + i * 3) % 90))),
  undefined,
  'int32',
);
const targets = tf.oneHot(ids, V);
const step = (): void => {
  const { value, grads } = tf.variableGrads(() => {
    const { logits } = model.forward(ids, { training: true, dropoutSeed: 1 });
    return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), targets), -1))) as tf.Scalar;
  }, model.variables);
  value.dataSync();
  tf.dispose([value, ...Object.values(grads)]);
};
step();
step();
const info = await tf.profile(() => {
  step();
});
const by = new Map<string, { ms: number; n: number }>();
let total = 0;
for (const k of info.kernels) {
  const ms = Number(await k.kernelTimeMs);
  total += ms;
  const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
  const e = by.get(key) ?? { ms: 0, n: 0 };
  e.ms += ms;
  e.n++;
  by.set(key, e);
}
console.log('total kernel ms', total.toFixed(1), 'kernels', info.kernels.length);
for (const [k, e] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 45))
  console.log(k.padEnd(20), e.ms.toFixed(1), e.n);
