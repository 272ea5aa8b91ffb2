// Sinusoidal absolute positions added to the token embeddings.
// Vaswani et al. 2017, "Attention Is All You Need", section 3.5:
//   PE[p][2i] = sin(p / 10000^(2i/d)),  PE[p][2i+1] = cos(p / 10000^(2i/d)).
// Computed from the formula for any position, so inputs longer than maxLen still get a (never seen) encoding.
import * as tf from '@tensorflow/tfjs';
import { ConstCache } from '../const-cache.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory } from './types.ts';

export function sinusoidalRows(start: number, length: number, dModel: number): Float32Array {
  const out = new Float32Array(length * dModel);
  for (let r = 0; r < length; r++) {
    const p = start + r;
    for (let j = 0; j < dModel; j++) {
      const angle = p / Math.pow(10000, (j - (j % 2)) / dModel);
      out[r * dModel + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return out;
}

export const createSinusoidal: PositionalFactory = (config: PositionalConfig): PositionalEncoding => {
  const cache = new ConstCache();
  return {
    name: 'sinusoidal',
    variables: [],
    variableNames: [],
    embed: (x, start) => {
      const seq = x.shape[1];
      const table = cache.get(`${start}:${seq}`, () =>
        tf.tensor2d(sinusoidalRows(start, seq, config.dModel), [seq, config.dModel]),
      );
      return tf.add(x, table);
    },
    rotate: (x) => x,
    bias: () => null,
    dispose: () => cache.dispose(),
  };
};
