// A data-parallel rank's share of a global batch. Every rank draws the same global batch (so the data position is
// the same on every replica) and keeps a contiguous range of its rows. The shard is exactly those rows of what
// makeBatch would build for the whole batch: the same padded length, and loss weights divided by the GLOBAL count of
// answer tokens, so the ranks' losses (and gradients) add up to the single-agent ones.
import type { Tokenizer } from '../data/tokenizer.ts';
import { PAD } from '../data/tokenizer.ts';
import type { Example } from '../data/types.ts';
import { encodeFitting, type Batch } from './batches.ts';
import { TrainConfigError } from './errors.ts';

/** Rows [start, end) of the global batch. */
export interface ShardRows {
  start: number;
  end: number;
}

export interface ShardBatch extends Batch {
  /** Non-pad input tokens of the whole global batch (what one step trains on, for tokens/s and tokensSeen). */
  globalTokens: number;
  /** Answer tokens of the whole global batch: the loss weights are 1 / this. */
  globalTargetTokens: number;
}

/**
 * Rank `rank`'s rows of a global batch of `batchSize` among `ranks`: contiguous and as even as integer division
 * allows (sizes differ by at most one; a rank gets no rows only when ranks > batchSize).
 */
export function shardRows(batchSize: number, ranks: number, rank: number): ShardRows {
  if (!Number.isInteger(ranks) || ranks < 1 || !Number.isInteger(rank) || rank < 0 || rank >= ranks)
    throw new TrainConfigError(`shardRows: rank ${rank} of ${ranks} is not a valid rank`);
  return { start: Math.floor((batchSize * rank) / ranks), end: Math.floor((batchSize * (rank + 1)) / ranks) };
}

/** Rows `rows` of the global batch `examples`, padded and weighted as the whole batch would be. */
export function makeShardBatch(
  examples: readonly Example[],
  tokenizer: Tokenizer,
  maxLen: number,
  rows: ShardRows,
): ShardBatch {
  if (examples.length === 0) throw new TrainConfigError('makeShardBatch: no examples');
  if (rows.start < 0 || rows.end > examples.length || rows.start > rows.end)
    throw new TrainConfigError(`makeShardBatch: rows [${rows.start}, ${rows.end}) of a batch of ${examples.length}`);
  // Every rank checks every example, so an over-long one fails all ranks alike.
  const encoded = encodeFitting(examples, tokenizer, maxLen);
  const length = Math.max(...encoded.map((e) => e.sequence.length - 1));
  let globalTargetTokens = 0;
  let globalTokens = 0;
  for (const e of encoded) {
    globalTargetTokens += e.sequence.length - e.targetStart;
    globalTokens += e.sequence.length - 1;
  }
  const vocab = tokenizer.vocabSize;
  const batchSize = rows.end - rows.start;
  const ids = new Int32Array(batchSize * length).fill(PAD);
  const weights = new Float32Array(batchSize * length * vocab);
  const w = 1 / globalTargetTokens;
  let tokens = 0;
  let targetTokens = 0;
  for (let b = 0; b < batchSize; b++) {
    const e = encoded[rows.start + b] as { sequence: number[]; targetStart: number };
    const n = e.sequence.length - 1;
    tokens += n;
    targetTokens += e.sequence.length - e.targetStart;
    for (let t = 0; t < n; t++) {
      ids[b * length + t] = e.sequence[t] as number;
      if (t + 1 >= e.targetStart) weights[(b * length + t) * vocab + (e.sequence[t + 1] as number)] = w;
    }
  }
  return { batchSize, length, ids, weights, tokens, targetTokens, globalTokens, globalTargetTokens };
}
