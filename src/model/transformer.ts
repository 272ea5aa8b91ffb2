// A decoder-only transformer: pre-LayerNorm blocks, causal self-attention, GELU feed-forward, with the
// positional encoding as a plug-in (src/model/positional). Written with plain tensor ops so it trains through
// tf.variableGrads on every backend, wasm included: the embedding is a one-hot matmul because the gradient of
// gather needs UnsortedSegmentSum, which wasm lacks. Weights come from the seed alone; dropout masks come from
// dropoutSeed alone, so a resumed run replays exactly.
import * as tf from '@tensorflow/tfjs';
import type { EncodingName, ModelSpec } from '../../protocol/messages.ts';
import { ENCODINGS } from '../../protocol/messages.ts';
import { Rng } from '../data/rng.ts';
import { matMul, matMulTransposeB } from './ops.ts';
import { ConstCache } from './const-cache.ts';
import { ModelConfigError } from './errors.ts';
import { createPositionalEncoding } from './positional/index.ts';
import { MAPE_DEFAULT_MAX_OFFSET } from './positional/mape.ts';
import { MAPE_PLAIN_ORDER, type MapeNumberOrder } from './positional/reference.ts';
import type { PositionalConfig, PositionalEncoding, TokenContext, WeightInit } from './positional/types.ts';

export interface TransformerConfig extends ModelSpec {
  vocabSize: number;
  encoding: EncodingName;
  /** MAPE only: how the task writes its numbers (from the task's format; absent: most-significant first). */
  mapeNumberOrder?: MapeNumberOrder;
}

export interface ForwardOptions {
  training: boolean;
  /** Seeds every dropout mask of this call; the training loop passes e.g. the step number. */
  dropoutSeed?: number;
  /** Also return the attention probabilities of every layer. */
  collectAttention?: boolean;
}

export interface ForwardResult {
  /** [batch, seq, vocab] */
  logits: tf.Tensor3D;
  /** Per layer [batch, heads, seq, seq]; only with collectAttention. */
  attention?: tf.Tensor4D[];
}

/** Keys and values of every earlier position, per layer [batch, heads, length, headDim]. Owned by the caller. */
export interface KvCache {
  length: number;
  layers: { k: tf.Tensor4D; v: tf.Tensor4D }[];
  /** Per row, the token ids so far: kept only for an encoding that reads tokens (mape). */
  tokens?: number[][];
}

interface LayerWeights {
  ln1Gain: tf.Variable;
  ln1Bias: tf.Variable;
  /** Fused q, k, v projection [dModel, 3 * dModel]: one matmul instead of three. */
  wQkv: tf.Variable;
  wOut: tf.Variable;
  bOut: tf.Variable;
  ln2Gain: tf.Variable;
  ln2Bias: tf.Variable;
  wUp: tf.Variable;
  bUp: tf.Variable;
  wDown: tf.Variable;
  bDown: tf.Variable;
}

const LN_EPSILON = 1e-5;
const MASKED = -1e9;
const INIT_STD = 0.02;
let instances = 0;

/** Throws ModelConfigError naming the first bad field; returns the config unchanged. */
export function validateTransformerConfig(config: TransformerConfig): TransformerConfig {
  const positiveInts: (keyof TransformerConfig)[] = ['layers', 'dModel', 'heads', 'ffnDim', 'maxLen', 'vocabSize'];
  for (const field of positiveInts) {
    const value = config[field];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new ModelConfigError(`model config: ${field} must be a positive integer, got ${String(value)}`, field);
    }
  }
  if (typeof config.dropout !== 'number' || !(config.dropout >= 0 && config.dropout < 1)) {
    throw new ModelConfigError(`model config: dropout must be in [0, 1), got ${String(config.dropout)}`, 'dropout');
  }
  if (!(ENCODINGS as readonly string[]).includes(config.encoding)) {
    throw new ModelConfigError(
      `model config: unknown encoding '${String(config.encoding)}', use one of ${ENCODINGS.join(', ')}`,
      'encoding',
    );
  }
  const cap = config.attentionLogitCap;
  if (cap !== undefined && !(typeof cap === 'number' && Number.isFinite(cap) && cap >= 0)) {
    throw new ModelConfigError(
      `model config: attentionLogitCap must be a number >= 0 (0 for none), got ${String(cap)}`,
      'attentionLogitCap',
    );
  }
  const stride = config.sinusoidalStride;
  if (stride !== undefined && !(typeof stride === 'number' && Number.isFinite(stride) && stride > 0)) {
    throw new ModelConfigError(
      `model config: sinusoidalStride must be a number > 0 (1 for the paper's table), got ${String(stride)}`,
      'sinusoidalStride',
    );
  }
  const maxOffset = config.mapeMaxOffset;
  if (maxOffset !== undefined && !(typeof maxOffset === 'number' && Number.isInteger(maxOffset) && maxOffset >= 0)) {
    throw new ModelConfigError(
      `model config: mapeMaxOffset must be an integer >= 0 (0 for no offset), got ${String(maxOffset)}`,
      'mapeMaxOffset',
    );
  }
  for (const field of ['mapeOffset', 'mapeRoles', 'mapeRelative'] as const) {
    const value = config[field];
    if (value !== undefined && typeof value !== 'boolean')
      throw new ModelConfigError(`model config: ${field} must be true or false, got ${String(value)}`, field);
  }
  if (config.dModel % config.heads !== 0) {
    throw new ModelConfigError(
      `model config: dModel ${config.dModel} is not divisible by heads ${config.heads}`,
      'dModel',
    );
  }
  if (config.encoding === 'rope' && (config.dModel / config.heads) % 2 !== 0) {
    throw new ModelConfigError(
      `model config: rope needs an even head dimension, got ${config.dModel / config.heads}`,
      'heads',
    );
  }
  return config;
}

/** Draws every initial weight from one seeded stream, in creation order, so one seed fixes the model. */
class SeededInit implements WeightInit {
  private readonly rng: Rng;
  readonly variables: tf.Variable[] = [];
  readonly names: string[] = [];
  constructor(
    seed: number,
    private readonly prefix: string,
  ) {
    this.rng = new Rng(seed);
  }

  private make(name: string, shape: number[], values: Float32Array): tf.Variable {
    // Engine-wide variable names must be unique, so they carry a per-instance prefix; `names` keeps the stable one.
    const initial = tf.tensor(values, shape);
    const v = tf.variable(initial, true, `${this.prefix}/${name}`);
    initial.dispose();
    this.variables.push(v);
    this.names.push(name);
    return v;
  }

  normal(name: string, shape: number[], std: number): tf.Variable {
    const size = shape.reduce((a, b) => a * b, 1);
    return this.make(name, shape, this.rng.normals(size, std));
  }

  zeros(name: string, shape: number[]): tf.Variable {
    return this.make(name, shape, new Float32Array(shape.reduce((a, b) => a * b, 1)));
  }

  ones(name: string, shape: number[]): tf.Variable {
    return this.make(name, shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1));
  }
}

/** tf.tidy for results that hold tensors inside plain objects (tidy walks them at runtime; its types do not). */
export function tidyObject<T>(fn: () => T): T {
  return tf.tidy(() => fn() as unknown as tf.TensorContainer) as unknown as T;
}

function layerNorm(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const mean = tf.mean(x, -1, true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), -1, true);
  return tf.add(tf.mul(tf.div(centered, tf.sqrt(tf.add(variance, LN_EPSILON))), gain), bias);
}

// GELU, tanh form (Hendrycks & Gimpel 2016), written as x * sigmoid(2z) since 0.5 * (1 + tanh(z)) = sigmoid(2z):
// Erf is not a kernel on every backend, and wasm's sigmoid is vectorized where its tanh is ~8x slower.
function gelu(x: tf.Tensor): tf.Tensor {
  const z2 = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), 2 * Math.sqrt(2 / Math.PI));
  return tf.mul(x, tf.sigmoid(z2));
}

export class Transformer {
  readonly config: TransformerConfig;
  /** All trainable weights, in a stable order (same config, same order). */
  readonly variables: tf.Variable[];
  /** Stable names of `variables`, same order, e.g. "layer0/attn/w_qkv"; checkpoints can key on these. */
  readonly variableNames: string[];
  readonly positional: PositionalEncoding;
  private readonly embedding: tf.Variable;
  private readonly layers: LayerWeights[];
  private readonly finalGain: tf.Variable;
  private readonly finalBias: tf.Variable;
  private readonly unembedding: tf.Variable;
  private readonly masks = new ConstCache();
  private readonly headDim: number;
  private forwardCalls = 0;
  private disposed = false;

  private constructor(config: TransformerConfig, seed: number) {
    this.config = { ...config };
    const { layers, dModel, heads, ffnDim, vocabSize } = config;
    this.headDim = dModel / heads;
    const init = new SeededInit(seed, `transformer${instances++}`);
    // GPT-2 style: small normal init, residual-output projections scaled down by depth.
    const residualStd = INIT_STD / Math.sqrt(2 * layers);
    this.embedding = init.normal('embedding', [vocabSize, dModel], INIT_STD);
    this.layers = [];
    for (let l = 0; l < layers; l++) {
      const p = `layer${l}`;
      this.layers.push({
        ln1Gain: init.ones(`${p}/ln1/gain`, [dModel]),
        ln1Bias: init.zeros(`${p}/ln1/bias`, [dModel]),
        wQkv: init.normal(`${p}/attn/w_qkv`, [dModel, 3 * dModel], INIT_STD),
        wOut: init.normal(`${p}/attn/w_out`, [dModel, dModel], residualStd),
        bOut: init.zeros(`${p}/attn/b_out`, [dModel]),
        ln2Gain: init.ones(`${p}/ln2/gain`, [dModel]),
        ln2Bias: init.zeros(`${p}/ln2/bias`, [dModel]),
        wUp: init.normal(`${p}/ffn/w_up`, [dModel, ffnDim], INIT_STD),
        bUp: init.zeros(`${p}/ffn/b_up`, [ffnDim]),
        wDown: init.normal(`${p}/ffn/w_down`, [ffnDim, dModel], residualStd),
        bDown: init.zeros(`${p}/ffn/b_down`, [dModel]),
      });
    }
    this.finalGain = init.ones('final_ln/gain', [dModel]);
    this.finalBias = init.zeros('final_ln/bias', [dModel]);
    this.unembedding = init.normal('unembedding', [dModel, vocabSize], INIT_STD);
    this.positional = createPositionalEncoding(config.encoding, positionalConfig(config, this.headDim), init);
    this.variables = init.variables;
    this.variableNames = init.names;
  }

  /** Builds a model whose every weight is drawn from `seed`; throws ModelConfigError on a bad config. */
  static create(config: TransformerConfig, seed: number): Transformer {
    validateTransformerConfig(config);
    if (!Number.isFinite(seed)) throw new ModelConfigError(`model seed must be a finite number, got ${seed}`, 'seed');
    return new Transformer(config, seed);
  }

  /**
   * Full-sequence forward pass. ids: int32 [batch, seq], every id in [0, vocabSize) (out-of-range ids embed as
   * zero vectors; validate before). Pure tensor ops, usable inside tf.variableGrads.
   */
  forward(ids: tf.Tensor2D, options: ForwardOptions): ForwardResult {
    this.assertAlive();
    const training = options.training && this.config.dropout > 0;
    // Without a dropoutSeed, masks still differ call to call but are reproducible for a fresh model.
    const seed = options.dropoutSeed ?? this.forwardCalls;
    this.forwardCalls++;
    return tidyObject((): ForwardResult => {
      const attention: tf.Tensor4D[] = [];
      const tokens =
        this.positional.readsTokens === true ? { rows: ids.arraySync(), training: options.training } : null;
      const { logits } = this.run(ids, null, {
        dropout: training ? { rate: this.config.dropout, seed, count: 0 } : null,
        attention: options.collectAttention === true ? attention : null,
        context: tokens === null ? null : { tokens: tokens.rows, training: tokens.training, seed },
      });
      return options.collectAttention === true ? { logits, attention } : { logits };
    });
  }

  /**
   * Inference step with a KV cache: ids [batch, n] continue the sequences in `cache` (or start them when null).
   * Returns logits for the n new positions and a new cache; the caller disposes the old cache (disposeKvCache).
   */
  forwardCached(ids: tf.Tensor2D, cache: KvCache | null): { logits: tf.Tensor3D; cache: KvCache } {
    this.assertAlive();
    return tidyObject(() => {
      if (this.positional.readsTokens !== true) {
        const out = this.run(ids, cache, { dropout: null, attention: null, context: null });
        return { logits: out.logits, cache: out.cache };
      }
      const fresh = ids.arraySync();
      const tokens = fresh.map((row, b) => [...(cache?.tokens?.[b] ?? []), ...row]);
      const context: TokenContext = { tokens, training: false, seed: 0 };
      const positional = this.positional;
      if (cache === null || positional.cachedPositionsHold?.(tokens, cache.length) !== false) {
        const out = this.run(ids, cache, { dropout: null, attention: null, context });
        return { logits: out.logits, cache: { ...out.cache, tokens } };
      }
      // A new token changed the positions of cached ones (a number that grew): recompute every position.
      const all = tf.tensor2d(tokens, [tokens.length, tokens[0]?.length ?? 0], 'int32');
      const out = this.run(all, null, { dropout: null, attention: null, context });
      const seq = ids.shape[1];
      const logits = tf.slice(out.logits, [0, out.cache.length - seq, 0], [-1, seq, -1]) as tf.Tensor3D;
      return { logits, cache: { ...out.cache, tokens } };
    });
  }

  parameterCount(): number {
    return this.variables.reduce((sum, v) => sum + v.size, 0);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // The positional encoding's variables are in `variables` too; its dispose also frees its constant tables.
    const own = new Set(this.positional.variables);
    for (const v of this.variables) if (!own.has(v)) v.dispose();
    this.positional.dispose();
    this.masks.dispose();
  }

  private assertAlive(): void {
    if (this.disposed) throw new ModelConfigError('this Transformer has been disposed', 'model');
  }

  private run(
    ids: tf.Tensor2D,
    cache: KvCache | null,
    opts: {
      dropout: { rate: number; seed: number; count: number } | null;
      attention: tf.Tensor4D[] | null;
      context: TokenContext | null;
    },
  ): { logits: tf.Tensor3D; cache: KvCache } {
    const { dModel, vocabSize } = this.config;
    const [batch, seq] = ids.shape;
    const start = cache?.length ?? 0;
    const dropout = (x: tf.Tensor): tf.Tensor => {
      if (opts.dropout === null) return x;
      // A fresh, reproducible seed per dropout site: "<dropoutSeed>:<site index>".
      return tf.dropout(x, opts.dropout.rate, undefined, `${opts.dropout.seed}:${opts.dropout.count++}`);
    };
    const intIds = ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32');
    const oneHot = tf.reshape(tf.oneHot(intIds, vocabSize), [batch * seq, vocabSize]);
    let x: tf.Tensor = tf.reshape(matMul(oneHot, this.embedding), [batch, seq, dModel]);
    x = dropout(
      opts.context === null
        ? this.positional.embed(x as tf.Tensor3D, start)
        : this.positional.embed(x as tf.Tensor3D, start, opts.context),
    );
    const nextCache: KvCache = { length: start + seq, layers: [] };
    this.layers.forEach((w, l) => {
      const h = layerNorm(x, w.ln1Gain, w.ln1Bias);
      const { out, k, v } = this.attend(h, w, l, start, cache?.layers[l] ?? null, opts, dropout);
      nextCache.layers.push({ k, v });
      x = tf.add(x, dropout(out));
      const h2 = tf.reshape(layerNorm(x, w.ln2Gain, w.ln2Bias), [batch * seq, dModel]);
      const up = gelu(tf.add(matMul(h2, w.wUp), w.bUp));
      const down = tf.add(matMul(up, w.wDown), w.bDown);
      x = tf.add(x, dropout(tf.reshape(down, [batch, seq, dModel])));
    });
    const final = tf.reshape(layerNorm(x, this.finalGain, this.finalBias), [batch * seq, dModel]);
    const logits = tf.reshape(matMul(final, this.unembedding), [batch, seq, vocabSize]) as tf.Tensor3D;
    return { logits, cache: nextCache };
  }

  private attend(
    h: tf.Tensor,
    w: LayerWeights,
    layer: number,
    start: number,
    past: { k: tf.Tensor4D; v: tf.Tensor4D } | null,
    { attention, context }: { attention: tf.Tensor4D[] | null; context: TokenContext | null },
    dropout: (x: tf.Tensor) => tf.Tensor,
  ): { out: tf.Tensor; k: tf.Tensor4D; v: tf.Tensor4D } {
    const { dModel, heads } = this.config;
    const [batch, seq] = h.shape as [number, number, number];
    const hd = this.headDim;
    // [b*s, 3d] -> [b, s, 3h, hd] -> [b, 3h, s, hd] -> q, k, v each [b, h, s, hd].
    const qkv = tf.transpose(
      tf.reshape(matMul(tf.reshape(h, [batch * seq, dModel]), w.wQkv), [batch, seq, 3 * heads, hd]),
      [0, 2, 1, 3],
    );
    const [q0, k0, v0] = tf.split(qkv, 3, 1) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const q = this.positional.rotate(q0, start);
    let k = this.positional.rotate(k0, start);
    let v = v0;
    if (past !== null) {
      k = tf.concat([past.k, k], 2);
      v = tf.concat([past.v, v], 2);
    }
    const kLen = start + seq;
    let scores: tf.Tensor = tf.mul(matMulTransposeB(q, k), 1 / Math.sqrt(hd));
    // Logit soft-capping (Gemma Team 2024, "Gemma 2", section 2: cap * tanh(logits / cap)), on the query-key term
    // only: a positional bias added below keeps its full range. tanh(z) = 2 sigmoid(2z) - 1 (see gelu).
    const cap = this.config.attentionLogitCap ?? 0;
    if (cap > 0) scores = tf.mul(tf.sub(tf.sigmoid(tf.mul(scores, 2 / cap)), 0.5), 2 * cap);
    const bias = this.positional.bias(layer, start, seq, kLen);
    if (bias !== null) scores = tf.add(scores, bias);
    const rowBias = context === null ? null : (this.positional.rowBias?.(layer, start, seq, kLen, context) ?? null);
    if (rowBias !== null) scores = tf.add(scores, rowBias);
    // One new query sees every cached key: no mask needed then.
    if (seq > 1) scores = tf.add(scores, this.causalMask(start, seq, kLen));
    const probs = tf.softmax(scores) as tf.Tensor4D;
    if (attention !== null) attention.push(probs);
    const mixed = matMul(dropout(probs), v);
    const merged = tf.reshape(tf.transpose(mixed, [0, 2, 1, 3]), [batch * seq, dModel]);
    const out = tf.reshape(tf.add(matMul(merged, w.wOut), w.bOut), [batch, seq, dModel]);
    return { out, k, v };
  }

  private causalMask(qStart: number, qLen: number, kLen: number): tf.Tensor2D {
    return this.masks.get(`${qStart}:${qLen}:${kLen}`, () => {
      const out = new Float32Array(qLen * kLen);
      for (let i = 0; i < qLen; i++) for (let j = qStart + i + 1; j < kLen; j++) out[i * kLen + j] = MASKED;
      return tf.tensor2d(out, [qLen, kLen]);
    });
  }
}

/** What the positional encoding gets from the model config (each encoding reads its own fields). */
function positionalConfig(config: TransformerConfig, headDim: number): PositionalConfig {
  const { dModel, heads, layers, maxLen } = config;
  const maxOffset = config.mapeOffset === false ? 0 : (config.mapeMaxOffset ?? MAPE_DEFAULT_MAX_OFFSET);
  return {
    dModel,
    heads,
    headDim,
    layers,
    maxLen,
    ...(config.sinusoidalStride === undefined ? {} : { sinusoidalStride: config.sinusoidalStride }),
    mape: {
      maxOffset,
      roles: config.mapeRoles !== false,
      order: config.mapeNumberOrder ?? MAPE_PLAIN_ORDER,
      relative: config.mapeRelative === true,
    },
  };
}

export function disposeKvCache(cache: KvCache | null): void {
  if (cache === null) return;
  for (const { k, v } of cache.layers) {
    k.dispose();
    v.dispose();
  }
}
