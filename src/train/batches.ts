// Turns examples into training batches. A sequence is BOS + prompt + target + EOS, padded with PAD; the model
// reads sequence[0..L-2] and predicts sequence[1..L-1]; the loss counts only the target and EOS positions.
import { BOS, EOS, PAD, type Tokenizer } from '../data/tokenizer.ts';
import type { Example } from '../data/types.ts';
import { TrainConfigError } from './errors.ts';

export interface Batch {
  batchSize: number;
  /** Time steps of the model input (longest sequence in the batch minus one). */
  length: number;
  /** Input ids, row-major [batchSize, length]. */
  ids: Int32Array;
  /**
   * Loss weights, row-major [batchSize, length, vocabSize]: one-hot of the next token at target positions,
   * divided by the number of target tokens, so the masked mean cross entropy is -sum(logSoftmax * weights).
   */
  weights: Float32Array;
  /** Non-pad input tokens, for tokens/s. */
  tokens: number;
  /** Positions that count in the loss. */
  targetTokens: number;
}

/** Token ids of the full training sequence and where its loss-bearing part starts. */
export function encodeExample(example: Example, tokenizer: Tokenizer): { sequence: number[]; targetStart: number } {
  const prompt = tokenizer.encode(example.prompt);
  const target = tokenizer.encode(example.target);
  return { sequence: [BOS, ...prompt, ...target, EOS], targetStart: 1 + prompt.length };
}

/** The model's input length for one example (the sequence minus its last token). */
export function inputLength(example: Example, tokenizer: Tokenizer): number {
  return tokenizer.encode(example.prompt).length + tokenizer.encode(example.target).length + 1;
}

/** Every example encoded, or a TrainConfigError naming the first that does not fit the model's maxLen. */
export function encodeFitting(
  examples: readonly Example[],
  tokenizer: Tokenizer,
  maxLen: number,
): ReturnType<typeof encodeExample>[] {
  const encoded = examples.map((e) => encodeExample(e, tokenizer));
  encoded.forEach((e, i) => {
    if (e.sequence.length - 1 > maxLen) {
      const ex = examples[i] as Example;
      throw new TrainConfigError(
        `example ${ex.id} (${ex.task}) needs ${e.sequence.length - 1} positions but the model's maxLen is ${maxLen}; ` +
          `use a preset with a larger maxLen or shorter problems`,
      );
    }
  });
  return encoded;
}

export function makeBatch(examples: readonly Example[], tokenizer: Tokenizer, maxLen: number): Batch {
  if (examples.length === 0) throw new TrainConfigError('makeBatch: no examples');
  const encoded = encodeFitting(examples, tokenizer, maxLen);
  const length = Math.max(...encoded.map((e) => e.sequence.length - 1));
  const vocab = tokenizer.vocabSize;
  const batchSize = examples.length;
  const ids = new Int32Array(batchSize * length).fill(PAD);
  const weights = new Float32Array(batchSize * length * vocab);
  let tokens = 0;
  let targetTokens = 0;
  for (const e of encoded) targetTokens += e.sequence.length - e.targetStart;
  const w = 1 / targetTokens;
  encoded.forEach((e, b) => {
    const n = e.sequence.length - 1;
    tokens += n;
    for (let t = 0; t < n; t++) {
      ids[b * length + t] = e.sequence[t] as number;
      // Input position t predicts sequence[t+1]; it counts when that token is part of the target or the EOS.
      if (t + 1 >= e.targetStart) weights[(b * length + t) * vocab + (e.sequence[t + 1] as number)] = w;
    }
  });
  return { batchSize, length, ids, weights, tokens, targetTokens };
}
