// Sinusoidal absolute positions added to the token embeddings.
// Vaswani et al. 2017, "Attention Is All You Need", section 3.5:
//   PE[p][2i] = sin(p / 10000^(2i/d)),  PE[p][2i+1] = cos(p / 10000^(2i/d)).
// Computed from the formula for any position, so inputs longer than maxLen still get a (never seen) encoding.
// `stride` (the model option sinusoidalStride, default 1 = the paper's table) encodes position p as PE[p * stride]:
// with 4 (the tiny preset), the rows of every fourth position, so that neighbouring tokens' rows differ by four
// times the angle on every frequency. The table changes slowly from one position to the next (its fastest pair
// turns 1 radian a position), and over the nine tokens of a 3-digit addition prompt that leaves the interior
// digits hard to address: with stride 1 the control experiment's sinusoidal run rarely reaches 95% within 4,000
// steps (docs/research/control-experiment.md; `npm run bench -- positions --spacing k` measures the margins).
import * as tf from '@tensorflow/tfjs';
import { ConstCache } from '../const-cache.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory } from './types.ts';

export function sinusoidalRows(start: number, length: number, dModel: number, stride = 1): Float32Array {
  const out = new Float32Array(length * dModel);
  for (let r = 0; r < length; r++) {
    const p = (start + r) * stride;
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
        tf.tensor2d(sinusoidalRows(start, seq, config.dModel, config.sinusoidalStride ?? 1), [seq, config.dModel]),
      );
      return tf.add(x, table);
    },
    rotate: (x) => x,
    bias: () => null,
    dispose: () => cache.dispose(),
  };
};
