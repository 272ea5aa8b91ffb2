// MAPE, the math-aware positional encoding: each token's embedding gets a learned row for the significance of its
// digit within its own number (mapeIndices in reference.ts: the k-th digit of every operand and the token that
// predicts the answer's k-th digit share one index) plus a learned row for its role (operand i, answer, operator,
// text, special). In training one random offset per sequence is added to every index above the fixed one, so the
// rows past the trained lengths are trained too (Abacus, McLeish et al. 2024). Definition: mapeIndices in reference.ts.
// The relative variant (mapeRelative) also adds a per-head bias on the clipped difference of two tokens' indices to
// every layer's attention logits (mapeRelativeBucket in reference.ts), one table shared by all layers like T5's.
// Rows are picked by a one-hot matmul, not a gather: gather's gradient needs UnsortedSegmentSum, missing on wasm.
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../data/rng.ts';
import { matMul } from '../ops.ts';
import {
  MAPE_FIXED_INDEX,
  MAPE_PLAIN_ORDER,
  MAPE_ROLE_COUNT,
  mapeIndices,
  mapeRelativeBucket,
  mapeRelativeBuckets,
  type MapeNumberOrder,
} from './reference.ts';
import { T5_BIAS_SCALE } from './t5.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory, TokenContext, WeightInit } from './types.ts';

/** The default largest training offset: enough that 12-digit numbers' rows are trained from 1-5 digit problems. */
export const MAPE_DEFAULT_MAX_OFFSET = 20;
/**
 * The relative variant's clip: differences beyond +-4 share their side's bucket, so the buckets that long problems
 * read are the ones short problems train (1-5 digit operands already reach +-4).
 */
export const MAPE_RELATIVE_MAX_DISTANCE = 4;
// The token embedding's scale: neither signal drowns the other at the start.
const INIT_STD = 0.02;

/** One offset per row in [0, maxOffset], drawn from the call's seed (the same seed gives the same offsets). */
export function mapeOffsets(rows: number, maxOffset: number, seed: number): number[] {
  if (maxOffset <= 0) return new Array<number>(rows).fill(0);
  // Mixed with a constant so the stream differs from the dropout masks drawn from the same seed.
  const rng = new Rng((seed ^ 0x6d617065) >>> 0);
  return Array.from({ length: rows }, () => rng.int(0, maxOffset));
}

/** Per row, the table row of each position start..start+seq-1: the index plus the row's offset, clamped. */
export function mapeRows(
  tokens: readonly number[],
  start: number,
  seq: number,
  offset: number,
  tableRows: number,
  order: MapeNumberOrder,
): { index: number[]; role: number[] } {
  const all = mapeIndices(tokens, order);
  const index = all.index
    .slice(start, start + seq)
    .map((i) => Math.min(i === MAPE_FIXED_INDEX ? i : i + offset, tableRows - 1));
  return { index, role: all.role.slice(start, start + seq) };
}

/** Per row, the relative bucket of every (query, key) pair: queries qStart..qStart+qLen-1, keys 0..kLen-1. */
export function mapeRelativeRows(
  tokens: readonly (readonly number[])[],
  qStart: number,
  qLen: number,
  kLen: number,
  order: MapeNumberOrder,
  maxDistance: number,
): Int32Array {
  const out = new Int32Array(tokens.length * qLen * kLen);
  tokens.forEach((row, b) => {
    const { index } = mapeIndices(row.slice(0, kLen), order);
    for (let i = 0; i < qLen; i++)
      for (let j = 0; j < kLen; j++)
        out[(b * qLen + i) * kLen + j] = mapeRelativeBucket(index[qStart + i] ?? 0, index[j] ?? 0, maxDistance);
  });
  return out;
}

export const createMape: PositionalFactory = (config: PositionalConfig, init: WeightInit): PositionalEncoding => {
  const options = config.mape ?? { maxOffset: MAPE_DEFAULT_MAX_OFFSET, roles: true, order: MAPE_PLAIN_ORDER };
  const { dModel } = config;
  // Text indices run to maxLen; training offsets go maxOffset further.
  const tableRows = config.maxLen + options.maxOffset + 1;
  const significance = init.normal('mape/significance', [tableRows, dModel], INIT_STD);
  const roles = options.roles ? init.normal('mape/roles', [MAPE_ROLE_COUNT, dModel], INIT_STD) : null;
  const buckets = mapeRelativeBuckets(MAPE_RELATIVE_MAX_DISTANCE);
  // Stored at 1/T5_BIAS_SCALE for the reason T5's is: a bias must grow to several units to single out a pair.
  const relative =
    options.relative === true
      ? init.normal('mape/relative_bias', [buckets, config.heads], INIT_STD / T5_BIAS_SCALE)
      : null;
  const variables = [significance, ...(roles === null ? [] : [roles]), ...(relative === null ? [] : [relative])];
  // Every layer asks for the same buckets: computed once per forward pass (per context and shape).
  let lastBuckets: { context: TokenContext; key: string; buckets: Int32Array } | null = null;
  const oneHot = (rows: number[][], width: number): tf.Tensor2D => {
    const flat = rows.flat();
    const out = new Float32Array(flat.length * width);
    flat.forEach((r, i) => {
      out[i * width + r] = 1;
    });
    return tf.tensor2d(out, [flat.length, width]);
  };
  return {
    name: 'mape',
    variables,
    variableNames: [
      'mape/significance',
      ...(roles === null ? [] : ['mape/roles']),
      ...(relative === null ? [] : ['mape/relative_bias']),
    ],
    readsTokens: true,
    embed: (x, start, context?: TokenContext) => {
      const [batch, seq] = x.shape;
      if (context === undefined || context.tokens.length !== batch)
        throw new RangeError('mape: embed needs the token ids of every row (TokenContext)');
      const offsets = context.training
        ? mapeOffsets(batch, options.maxOffset, context.seed)
        : new Array<number>(batch).fill(0);
      const picked = context.tokens.map((row, b) =>
        mapeRows(row, start, seq, offsets[b] ?? 0, tableRows, options.order),
      );
      let added: tf.Tensor = matMul(
        oneHot(
          picked.map((p) => p.index),
          tableRows,
        ),
        significance,
      );
      if (roles !== null)
        added = tf.add(
          added,
          matMul(
            oneHot(
              picked.map((p) => p.role),
              MAPE_ROLE_COUNT,
            ),
            roles,
          ),
        );
      return tf.add(x, tf.reshape(added, [batch, seq, dModel]));
    },
    cachedPositionsHold: (tokens, cached) =>
      tokens.every((row) => {
        const before = mapeIndices(row.slice(0, cached), options.order);
        const now = mapeIndices(row, options.order);
        for (let t = 0; t < cached; t++)
          if (before.index[t] !== now.index[t] || before.role[t] !== now.role[t]) return false;
        return true;
      }),
    rotate: (x) => x,
    bias: () => null,
    rowBias: (_layer, qStart, qLen, kLen, context) => {
      if (relative === null) return null;
      const batch = context.tokens.length;
      const key = `${qStart}:${qLen}:${kLen}`;
      if (lastBuckets?.context !== context || lastBuckets.key !== key) {
        const rows = mapeRelativeRows(context.tokens, qStart, qLen, kLen, options.order, MAPE_RELATIVE_MAX_DISTANCE);
        lastBuckets = { context, key, buckets: rows };
      }
      const oneHot = tf.oneHot(tf.tensor1d(lastBuckets.buckets, 'int32'), buckets);
      const perPair = tf.reshape(tf.mul(matMul(oneHot, relative), T5_BIAS_SCALE), [batch, qLen, kLen, config.heads]);
      return tf.transpose(perPair, [0, 3, 1, 2]) as tf.Tensor4D;
    },
    dispose: () => {
      lastBuckets = null;
      for (const v of variables) v.dispose();
    },
  };
};
