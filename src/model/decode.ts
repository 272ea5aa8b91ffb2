// Greedy decoding and attention maps, on the evaluation hot path. Prompts are grouped by length so every row of
// a batch sits at the same positions (no padding, so no position shift), then decoded with a KV cache: each new
// token costs one single-position forward pass per batch, and the only host sync per step is the argmax ids.
import * as tf from '@tensorflow/tfjs';
import { ModelInputError } from './errors.ts';
import type { KvCache, Transformer } from './transformer.ts';
import { disposeKvCache, tidyObject } from './transformer.ts';

export interface GreedyDecodeOptions {
  maxNewTokens: number;
  eosId: number;
  /** Prompts decoded together (default 64). */
  batchSize?: number;
}

function checkPrompts(model: Transformer, prompts: number[][]): void {
  const vocab = model.config.vocabSize;
  prompts.forEach((prompt, i) => {
    if (!Array.isArray(prompt) || prompt.length === 0)
      throw new ModelInputError(`prompt ${i} is empty: it needs at least BOS`);
    prompt.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new ModelInputError(`prompt ${i}, token ${j}: id ${String(id)} is not in [0, ${vocab})`);
      }
    });
  });
}

/**
 * For each prompt (token ids used as they are, so include BOS), the greedily generated ids after it, up to
 * maxNewTokens, stopping before EOS (EOS itself is not returned). Same order as `prompts`.
 */
export function greedyDecode(model: Transformer, prompts: number[][], options: GreedyDecodeOptions): number[][] {
  const { maxNewTokens, eosId } = options;
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new ModelInputError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ModelInputError(`batchSize must be a positive integer, got ${batchSize}`);
  checkPrompts(model, prompts);
  const results: number[][] = prompts.map(() => []);
  if (maxNewTokens === 0) return results;
  const byLength = new Map<number, number[]>();
  prompts.forEach((prompt, i) => {
    const group = byLength.get(prompt.length);
    if (group === undefined) byLength.set(prompt.length, [i]);
    else group.push(i);
  });
  for (const [length, indices] of byLength) {
    for (let from = 0; from < indices.length; from += batchSize) {
      const chunk = indices.slice(from, from + batchSize);
      const rows = chunk.map((i) => prompts[i] ?? []);
      const generated = decodeBatch(model, rows, length, maxNewTokens, eosId);
      chunk.forEach((i, r) => {
        results[i] = generated[r] ?? [];
      });
    }
  }
  return results;
}

function decodeBatch(
  model: Transformer,
  rows: number[][],
  length: number,
  maxNewTokens: number,
  eosId: number,
): number[][] {
  const out: number[][] = rows.map(() => []);
  const done = rows.map(() => false);
  let cache: KvCache | null = null;
  let input = tf.tensor2d(rows.flat(), [rows.length, length], 'int32');
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      const { logits, cache: next } = model.forwardCached(input, cache);
      disposeKvCache(cache);
      cache = next;
      const nextIds = tf.tidy(() => {
        const last = tf.squeeze(tf.slice(logits, [0, logits.shape[1] - 1, 0], [-1, 1, -1]), [1]);
        return tf.argMax(last, -1).toInt() as tf.Tensor1D;
      });
      logits.dispose();
      const ids = nextIds.dataSync();
      input.dispose();
      input = tf.reshape(nextIds, [rows.length, 1]);
      nextIds.dispose();
      let alive = 0;
      ids.forEach((id, r) => {
        if (done[r]) return;
        if (id === eosId) done[r] = true;
        else {
          out[r]?.push(id);
          alive++;
        }
      });
      if (alive === 0) break;
    }
  } finally {
    input.dispose();
    disposeKvCache(cache);
  }
  return out;
}

/** Attention probabilities of one sequence (ids used as they are), as [layer][head][query][key]. */
export function attentionMaps(model: Transformer, ids: number[]): number[][][][] {
  checkPrompts(model, [ids]);
  const { logits, attention } = tidyObject(() => {
    const input = tf.tensor2d(ids, [1, ids.length], 'int32');
    return model.forward(input, { training: false, collectAttention: true });
  });
  try {
    return (attention ?? []).map((layer) => (layer.arraySync() as number[][][][])[0] ?? []);
  } finally {
    logits.dispose();
    for (const a of attention ?? []) a.dispose();
  }
}
