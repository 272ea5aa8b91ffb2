// T5 relative position bias: a learned scalar per head and per relative-position bucket, added to the attention
// logits, one table shared by all layers. Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
// Unified Text-to-Text Transformer"; buckets as in mesh-tensorflow's _relative_position_bucket with 32 buckets,
// max distance 128, bidirectional=false (a causal decoder only looks back).
// The lookup is a one-hot matmul, not a gather: gather's gradient needs UnsortedSegmentSum, missing on wasm.
import * as tf from '@tensorflow/tfjs';
import { matMul } from '../ops.ts';
import { ConstCache } from '../const-cache.ts';
import { t5RelativeBucket } from './reference.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory, WeightInit } from './types.ts';

export const T5_NUM_BUCKETS = 32;
export const T5_MAX_DISTANCE = 128;

export const createT5: PositionalFactory = (config: PositionalConfig, init: WeightInit): PositionalEncoding => {
  const table = init.normal('t5/relative_bias', [T5_NUM_BUCKETS, config.heads], 0.02);
  const cache = new ConstCache();
  return {
    name: 't5',
    variables: [table],
    variableNames: ['t5/relative_bias'],
    embed: (x) => x,
    rotate: (x) => x,
    bias: (_layer, qStart, qLen, kLen) => {
      const oneHot = cache.get(`${qStart}:${qLen}:${kLen}`, () => {
        const out = new Float32Array(qLen * kLen * T5_NUM_BUCKETS);
        for (let i = 0; i < qLen; i++) {
          for (let j = 0; j < kLen; j++) {
            const bucket = t5RelativeBucket(j - (qStart + i), false, T5_NUM_BUCKETS, T5_MAX_DISTANCE);
            out[(i * kLen + j) * T5_NUM_BUCKETS + bucket] = 1;
          }
        }
        return tf.tensor2d(out, [qLen * kLen, T5_NUM_BUCKETS]);
      });
      const perPair = tf.reshape(matMul(oneHot, table), [qLen, kLen, config.heads]);
      return tf.transpose(perPair, [2, 0, 1]) as tf.Tensor3D;
    },
    dispose: () => {
      table.dispose();
      cache.dispose();
    },
  };
};
