import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { greedyDecode } from '../../src/model/decode.ts';
import { tokenizer, BOS, EOS, PAD } from '../../src/data/tokenizer.ts';
import { Rng } from '../../src/data/rng.ts';
import type { EncodingName } from '../../protocol/messages.ts';
const encodings = (process.argv[2] ?? 'sinusoidal').split(',') as EncodingName[];
const steps = Number(process.argv[3] ?? 400);
const lr = Number(process.argv[4] ?? 1e-3);
await selectBackend('wasm');
const V = tokenizer.vocabSize;
const rev = (s: string): string => [...s].reverse().join('');
function example(rng: Rng): { prompt: number[]; answer: number[] } {
  const a = rng.int(0, 999), b = rng.int(0, 999);
  return { prompt: [BOS, ...tokenizer.encode(`${a}+${b}=`)], answer: tokenizer.encode(rev(String(a + b))) };
}
for (const encoding of encodings) {
  const rng = new Rng(1);
  const model = Transformer.create({ layers: 2, dModel: 64, heads: 4, ffnDim: 256, dropout: 0, maxLen: 64, vocabSize: V, encoding }, 1);
  const opt = tf.train.adam(lr, 0.9, 0.98);
  const t0 = performance.now();
  for (let step = 1; step <= steps; step++) {
    const rows = Array.from({ length: 64 }, () => example(rng));
    const L = 16;
    const ids: number[][] = [], tg: number[][] = [], w: number[][] = [];
    for (const r of rows) {
      const seq = [...r.prompt, ...r.answer, EOS];
      const inp = seq.slice(0, -1), out = seq.slice(1);
      const m = out.map((_, i) => (i >= r.prompt.length - 1 ? 1 : 0));
      while (inp.length < L) { inp.push(PAD); out.push(PAD); m.push(0); }
      ids.push(inp); tg.push(out); w.push(m);
    }
    const idsT = tf.tensor2d(ids, undefined, 'int32'), tgT = tf.tensor2d(tg, undefined, 'int32'), wT = tf.tensor2d(w);
    const loss = opt.minimize(() => {
      const { logits } = model.forward(idsT, { training: true, dropoutSeed: step });
      const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(tgT, V)), -1));
      return tf.div(tf.sum(tf.mul(nll, wT)), tf.sum(wT)) as tf.Scalar;
    }, true, model.variables);
    if (step % 100 === 0) {
      const test = Array.from({ length: 200 }, () => example(new Rng(rng.nextUint32())));
      const out = greedyDecode(model, test.map((t) => t.prompt), { maxNewTokens: 6, eosId: EOS });
      const em = out.filter((o, i) => o.join(',') === test[i]?.answer.join(',')).length / test.length;
      console.log(`${encoding} step ${step} loss ${loss?.dataSync()[0]?.toFixed(4)} em ${em.toFixed(3)} ${((performance.now() - t0) / 1000).toFixed(0)}s`);
      if (em >= 0.95) { tf.dispose([idsT, tgT, wT]); loss?.dispose(); break; }
    }
    tf.dispose([idsT, tgT, wT]); loss?.dispose();
  }
  model.dispose(); opt.dispose();
}
