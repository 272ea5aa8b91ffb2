// ALiBi: no position in the input; each head adds -slope_h * (query - key) to its attention logits, a penalty
// linear in distance. Press et al. 2022, "Train Short, Test Long: Attention with Linear Biases Enables Input
// Length Extrapolation"; slopes (incl. head counts that are not powers of two) as in their reference code.
import * as tf from '@tensorflow/tfjs';
import { ConstCache } from '../const-cache.ts';
import { alibiSlopes } from './reference.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory } from './types.ts';

export const createAlibi: PositionalFactory = (config: PositionalConfig): PositionalEncoding => {
  const slopes = alibiSlopes(config.heads);
  const cache = new ConstCache();
  return {
    name: 'alibi',
    variables: [],
    variableNames: [],
    embed: (x) => x,
    rotate: (x) => x,
    bias: (_layer, qStart, qLen, kLen) =>
      // One table for every layer (the slopes are fixed); future keys get 0 here and are masked by the caller.
      cache.get(`${qStart}:${qLen}:${kLen}`, () => {
        const out = new Float32Array(config.heads * qLen * kLen);
        slopes.forEach((slope, h) => {
          for (let i = 0; i < qLen; i++) {
            for (let j = 0; j < kLen; j++) {
              const distance = qStart + i - j;
              out[(h * qLen + i) * kLen + j] = distance > 0 ? -slope * distance : 0;
            }
          }
        });
        return tf.tensor3d(out, [config.heads, qLen, kLen]);
      }),
    dispose: () => cache.dispose(),
  };
};
