import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { greedyDecode } from '../../src/model/decode.ts';
import { ENCODINGS } from '../../protocol/messages.ts';
const backend = (process.argv[2] ?? 'wasm') as 'cpu' | 'wasm';
const batch = Number(process.argv[3] ?? 64);
const seq = Number(process.argv[4] ?? 16);
const only = process.argv[5];
await selectBackend(backend);
const V = 100;
for (const encoding of ENCODINGS) {
  if (only && only !== encoding) continue;
  const model = Transformer.create(
    { layers: 2, dModel: 64, heads: 4, ffnDim: 256, dropout: 0, maxLen: 64, vocabSize: V, encoding },
    1,
  );
  const ids = tf.tensor2d(
    Array.from({ length: batch }, (_, b) => Array.from({ length: seq }, (_, i) => 4 + ((b * 7 + i * 3) % 90))),
    undefined,
    'int32',
  );
  const targets = tf.oneHot(
    tf.tensor2d(
      Array.from({ length: batch }, (_, b) => Array.from({ length: seq }, (_, i) => 4 + ((b * 5 + i) % 90))),
      undefined,
      'int32',
    ),
    V,
  );
  const step = (): void => {
    const { value, grads } = tf.variableGrads(() => {
      const { logits } = model.forward(ids, { training: true, dropoutSeed: 1 });
      return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), targets), -1))) as tf.Scalar;
    }, model.variables);
    value.dataSync();
    tf.dispose([value, ...Object.values(grads)]);
  };
  for (let i = 0; i < 3; i++) step();
  const n = 10;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) step();
  const ms = (performance.now() - t0) / n;
  const cpu = process.cpuUsage(c0);
  const cpuMs = (cpu.user + cpu.system) / 1000 / n;
  const fwd0 = performance.now();
  for (let i = 0; i < n; i++)
    tf.tidy(() => {
      model.forward(ids, { training: false }).logits.dataSync();
    });
  const fwdMs = (performance.now() - fwd0) / n;
  const prompts = Array.from({ length: 64 }, (_, b) => [1, ...Array.from({ length: 8 }, (_, i) => 4 + ((b + i) % 10))]);
  greedyDecode(model, prompts.slice(0, 4), { maxNewTokens: 4, eosId: 2 });
  const d0 = performance.now();
  const out = greedyDecode(model, prompts, { maxNewTokens: 8, eosId: 2 });
  const dMs = performance.now() - d0;
  const toks = out.reduce((s, o) => s + o.length, 0);
  console.log(
    `${backend} ${encoding} batch=${batch} seq=${seq}: fwd+bwd ${ms.toFixed(1)} ms/step wall, ${cpuMs.toFixed(1)} ms cpu (${((batch * seq) / (ms / 1000)).toFixed(0)} tok/s), fwd ${fwdMs.toFixed(1)} ms; decode 64x8: ${dMs.toFixed(0)} ms (${(toks / (dMs / 1000)).toFixed(0)} tok/s)`,
  );
  tf.dispose([ids, targets]);
  model.dispose();
}
