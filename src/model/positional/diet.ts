// DIET-ABS: decoupled positional attention with absolute positions. Chen et al. 2021, "A Simple and Effective
// Positional Encoding for Transformers" (arXiv 2104.08698). Position never enters the token stream; instead
// every layer l and head h adds a learned positional term to its attention logits:
//
//   A^{l,h}_{ij} = (x_i W_Q^{l,h}) (x_j W_K^{l,h})^T / sqrt(d_head)  +  (p^{l,h}_Q[i]) (p^{l,h}_K[j])^T / sqrt(d_p)
//
// with p_Q, p_K in R^{maxLen x d_p} learned per layer and head (d_p = d_head here). Positions past maxLen reuse
// the last learned row (learned absolute tables cannot extrapolate; clamping keeps decoding defined).
// Rows are picked by a one-hot matmul, not a gather: gather's gradient needs UnsortedSegmentSum, missing on wasm.
import * as tf from '@tensorflow/tfjs';
import { matMul, matMulTransposeB } from '../ops.ts';
import { ConstCache } from '../const-cache.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory, WeightInit } from './types.ts';

// Large enough that the bilinear term's gradient is not vanishingly small at the start (initial term std ~0.04).
const INIT_STD = 0.2;

export const createDiet: PositionalFactory = (config: PositionalConfig, init: WeightInit): PositionalEncoding => {
  const { heads, headDim: dp, maxLen, layers } = config;
  const names: string[] = [];
  const variables: tf.Variable[] = [];
  // Stored as [maxLen, heads * d_p] so one matmul picks every head's rows.
  const pq: tf.Variable[] = [];
  const pk: tf.Variable[] = [];
  for (let l = 0; l < layers; l++) {
    for (const [kind, list] of [
      ['q', pq],
      ['k', pk],
    ] as const) {
      const name = `diet/layer${l}/p_${kind}`;
      const v = init.normal(name, [maxLen, heads * dp], INIT_STD);
      list.push(v);
      names.push(name);
      variables.push(v);
    }
  }
  const cache = new ConstCache();
  const selector = (start: number, len: number): tf.Tensor2D =>
    cache.get(`${start}:${len}`, () => {
      const out = new Float32Array(len * maxLen);
      for (let r = 0; r < len; r++) out[r * maxLen + Math.min(start + r, maxLen - 1)] = 1;
      return tf.tensor2d(out, [len, maxLen]);
    });
  const rows = (table: tf.Variable, start: number, len: number): tf.Tensor3D =>
    tf.transpose(tf.reshape(matMul(selector(start, len), table as tf.Tensor2D), [len, heads, dp]), [1, 0, 2]);
  return {
    name: 'diet',
    variables,
    variableNames: names,
    embed: (x) => x,
    rotate: (x) => x,
    bias: (layer, qStart, qLen, kLen) => {
      const q = pq[layer];
      const k = pk[layer];
      if (q === undefined || k === undefined) throw new RangeError(`diet: no layer ${layer} (the model has ${layers})`);
      return tf.mul(matMulTransposeB(rows(q, qStart, qLen), rows(k, 0, kLen)), 1 / Math.sqrt(dp)) as tf.Tensor3D;
    },
    dispose: () => {
      for (const v of variables) v.dispose();
      cache.dispose();
    },
  };
};
