// Rotary position embedding on queries and keys, rotate-half layout over the full head dimension, base 10000.
// Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding". Dimension i pairs with i + d/2:
//   rope(x, p) = x * cos(p θ) + rotateHalf(x) * sin(p θ),  rotateHalf([a, b]) = [-b, a],  θ_i = base^(-2i/d)
// (the cos/sin rows repeat θ_0..θ_{d/2-1} twice). q·k then depends on positions only through their offset.
// rotateHalf is a fixed matrix product: plain matmul has gradients on every backend.
import * as tf from '@tensorflow/tfjs';
import { matMul } from '../ops.ts';
import { ConstCache } from '../const-cache.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory } from './types.ts';

export const ROPE_BASE = 10000;

export const createRope: PositionalFactory = (config: PositionalConfig): PositionalEncoding => {
  const d = config.headDim;
  const half = d / 2;
  const cache = new ConstCache();
  const rotateHalf = (): tf.Tensor2D =>
    cache.get('rotate-half', () => {
      // (x R)[j] = -x[j + d/2] for j < d/2, and x[j - d/2] for j >= d/2.
      const r = new Float32Array(d * d);
      for (let j = 0; j < half; j++) {
        r[(j + half) * d + j] = -1;
        r[j * d + (j + half)] = 1;
      }
      return tf.tensor2d(r, [d, d]);
    });
  const tables = (start: number, seq: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } => {
    const make = (fn: (a: number) => number): tf.Tensor2D => {
      const out = new Float32Array(seq * d);
      for (let r = 0; r < seq; r++) {
        for (let i = 0; i < half; i++) {
          const v = fn((start + r) * Math.pow(ROPE_BASE, (-2 * i) / d));
          out[r * d + i] = v;
          out[r * d + i + half] = v;
        }
      }
      return tf.tensor2d(out, [seq, d]);
    };
    return {
      cos: cache.get(`cos:${start}:${seq}`, () => make(Math.cos)),
      sin: cache.get(`sin:${start}:${seq}`, () => make(Math.sin)),
    };
  };
  return {
    name: 'rope',
    variables: [],
    variableNames: [],
    embed: (x) => x,
    rotate: (x, start) => {
      const [b, h, seq] = x.shape;
      const { cos, sin } = tables(start, seq);
      const rotated = tf.reshape(matMul(tf.reshape(x, [b * h * seq, d]), rotateHalf()), [b, h, seq, d]);
      return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
    },
    bias: () => null,
    dispose: () => cache.dispose(),
  };
};
