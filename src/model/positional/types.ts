// The plug-in interface every positional encoding implements. The transformer calls each hook at a fixed
// place; an encoding implements the hooks it needs and leaves the others as identity / null:
//   embed      after the token embedding, before the first layer (sinusoidal adds its table here);
//   rotate     on the new q and the new k of every layer, before the scores and before k enters the KV cache (rope);
//   bias       added to every layer's attention logits, before the causal mask and softmax (alibi, diet, t5).
// An encoding that reads the tokens themselves (mape: positions from the digits of each number) says so with
// readsTokens; the transformer then hands embed (and rowBias, a bias per row: mape's relative variant) the token ids
// of every row, and its positions differ row to row.
// Positions are absolute: queries sit at qStart..qStart+qLen-1 and keys at 0..kLen-1 (the KV cache holds the
// earlier keys), so a decoding step passes qStart = kLen - 1, qLen = 1. Every row of a batch shares positions.
// Hooks are called inside the caller's tf.tidy. What they return may be a constant the module caches and owns:
// use it, never dispose it.
import type * as tf from '@tensorflow/tfjs';
import type { EncodingName } from '../../../protocol/messages.ts';
import type { MapeNumberOrder } from './reference.ts';

export interface PositionalConfig {
  dModel: number;
  heads: number;
  headDim: number;
  layers: number;
  /** Learned tables (diet) cover 0..maxLen-1; longer inputs clamp to the last learned row. */
  maxLen: number;
  /** Sinusoidal only: position p is encoded as the table's row p * sinusoidalStride (absent: 1). */
  sinusoidalStride?: number;
  /**
   * MAPE only: the largest random offset added in training (0: none), the role embedding, how numbers are written,
   * and the relative variant's attention bias (absent: none).
   */
  mape?: { maxOffset: number; roles: boolean; order: MapeNumberOrder; relative?: boolean };
}

/** What an encoding that reads tokens gets besides the embeddings. */
export interface TokenContext {
  /** Per row, the token ids of positions 0..start+seq-1 (the KV cache's earlier tokens first). */
  tokens: readonly (readonly number[])[];
  /** Training draws random offsets; evaluation and decoding do not. */
  training: boolean;
  /** Seeds this call's random draws (the training loop's per-step seed), so a resumed run replays them. */
  seed: number;
}

export interface PositionalEncoding {
  readonly name: EncodingName;
  /** Trainable weights of the encoding (empty for the fixed ones), in a stable order. */
  readonly variables: tf.Variable[];
  /** Stable names for `variables`, same order (no per-instance prefix; checkpoints key on these). */
  readonly variableNames: string[];
  /** True when embed needs the TokenContext (positions computed from the tokens). */
  readonly readsTokens?: boolean;
  /** x: [batch, seq, dModel] at positions start..start+seq-1; returns the same shape. */
  embed(x: tf.Tensor3D, start: number, context?: TokenContext): tf.Tensor3D;
  /**
   * For encodings that read tokens: whether the first `cached` positions keep the indices they had when they were
   * cached now that `tokens` extends them (false: the KV cache is stale and the caller recomputes).
   */
  cachedPositionsHold?(tokens: readonly (readonly number[])[], cached: number): boolean;
  /** x: queries or keys [batch, heads, seq, headDim] at positions start..start+seq-1; same shape back. */
  rotate(x: tf.Tensor4D, start: number): tf.Tensor4D;
  /** [heads, qLen, kLen] added to layer `layer`'s logits, or null when the encoding adds none. */
  bias(layer: number, qStart: number, qLen: number, kLen: number): tf.Tensor3D | null;
  /**
   * For encodings that read tokens: a bias per row, [batch, heads, qLen, kLen], added to layer `layer`'s logits
   * beside `bias` (mape's relative variant), or null when it adds none.
   */
  rowBias?(layer: number, qStart: number, qLen: number, kLen: number, context: TokenContext): tf.Tensor4D | null;
  /** Frees the variables and cached constants. */
  dispose(): void;
}

/** Builds an encoding; `init` draws initial weights deterministically from the model's seed. */
export type PositionalFactory = (config: PositionalConfig, init: WeightInit) => PositionalEncoding;

/** Deterministic initializers, shared with the transformer so one seed fixes every weight. */
export interface WeightInit {
  /** A trainable variable of the given shape, normal(0, std); `name` is the stable name. */
  normal(name: string, shape: number[], std: number): tf.Variable;
  zeros(name: string, shape: number[]): tf.Variable;
  ones(name: string, shape: number[]): tf.Variable;
}
