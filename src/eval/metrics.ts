// Scores decoded predictions against their examples, in the shape of protocol's Evaluation fields.
//   exactMatch        whole target: prediction.trim() === target.trim() (steps and all). Per problem: `correct`.
//   answerMatch       final answer only, as strings after normalizeAnswer (no mathjs).
//   symbolicAccuracy  final answer equivalent by isEquivalent (mathjs). Per problem: `symbolic`.
//   stepAccuracy      over every "a op b = c" step found in the predictions of examples whose target has steps:
//                     the fraction whose arithmetic is right (0 when such examples exist but no step was
//                     written; null when no example's target has steps).
//   perLength         exact match (whole target) and digit accuracy per Example.length.
//   digitAccuracy     per problem, the answer's digits right in place, aligned from the units digit, over the longer
//                     of the predicted and the true answer (a missing or extra digit counts wrong); the mean.
//   longestLength90   the longest length L such that every length from the shortest up to L has >= 90% exact
//                     match (null when the shortest does not): how far a model carries, without one lucky bucket.
//   errorTaxonomy     classifyError over problems whose final answer is not equivalent (symbolic false).
// The final answer of a prediction: the rest of the first line after the first "####" when the target has
// "####" (none there is a format error); otherwise the prediction's first line (as many lines as the target
// has). Spaces taken out when the example is spaced, then reversed back when it is reversed, then leading zeros
// dropped when the example is padded.
import type { Example } from '../data/types.ts';
import { EvalError } from './errors.ts';
import { isEquivalent, normalizeAnswer } from './equivalence.ts';
import { longestPassingLength } from './longest-length.ts';
import { countSteps } from './steps.ts';
import { classifyError, emptyTaxonomy } from './taxonomy.ts';

export { longestPassingLength } from './longest-length.ts';

export interface ProblemScore {
  id: string;
  split: string;
  length: number;
  correct: boolean;
  symbolic: boolean;
  digitAccuracy: number;
  prediction: string;
  target: string;
}

export interface Scores {
  exactMatch: number;
  answerMatch: number;
  symbolicAccuracy: number;
  stepAccuracy: number | null;
  perLength: Record<string, { n: number; exactMatch: number; digitAccuracy: number }>;
  digitAccuracy: number;
  longestLength90: number | null;
  errorTaxonomy: Record<string, number>;
  problems: ProblemScore[];
}

/** The final answer in a prediction, in normal reading order; undefined when there is none. */
export function predictedAnswer(
  prediction: string,
  example: Pick<Example, 'target' | 'reversed' | 'spaced' | 'padded'>,
): string | undefined {
  let answer: string | undefined;
  if (example.target.includes('####')) {
    const i = prediction.indexOf('####');
    answer = i < 0 ? undefined : (prediction.slice(i + 4).split('\n')[0] ?? '').trim();
  } else {
    // As many lines as the target has (one for generated tasks): text after them is run-on generation.
    const lines = example.target.trim().split('\n').length;
    answer = prediction.trim().split('\n').slice(0, lines).join('\n').trim();
  }
  if (answer === undefined || answer === '') return undefined;
  if (example.spaced === true) answer = answer.replace(/ /g, '');
  if (example.reversed === true) answer = Array.from(answer).reverse().join('');
  return example.padded === true && /^\d+$/.test(answer) ? answer.replace(/^0+(?=\d)/, '') : answer;
}

/** Digits of `answer` right in place, aligned from the units digit, over the longer of the two; 0 for none. */
export function digitAccuracy(predicted: string | undefined, answer: string): number {
  if (predicted === undefined || predicted === '') return 0;
  const width = Math.max(predicted.length, answer.length);
  let right = 0;
  for (let k = 1; k <= width; k++) {
    const p = predicted[predicted.length - k];
    if (p !== undefined && p === answer[answer.length - k]) right++;
  }
  return right / width;
}

/** The prompt with its numbers in ordinary order (no spaces, no padding zeros), for the error taxonomy. */
function plainPrompt(example: Example): string {
  const prompt = example.spaced === true ? example.prompt.replace(/ /g, '') : example.prompt;
  if (example.reversedOperands !== true && example.padded !== true) return prompt;
  return prompt.replace(/\d+/g, (run) => {
    const ordered = example.reversedOperands === true ? Array.from(run).reverse().join('') : run;
    return ordered.replace(/^0+(?=\d)/, '');
  });
}

export function scoreProblems(examples: readonly Example[], predictions: readonly string[], split: string): Scores {
  if (examples.length !== predictions.length) {
    throw new EvalError(`scoreProblems: ${examples.length} examples but ${predictions.length} predictions`);
  }
  const problems: ProblemScore[] = [];
  const buckets = new Map<number, { n: number; correct: number; digits: number }>();
  let digitsTotal = 0;
  const taxonomy: Record<string, number> = emptyTaxonomy();
  let exact = 0;
  let answerExact = 0;
  let symbolicCount = 0;
  let stepsTotal = 0;
  let stepsCorrect = 0;
  let anyTargetSteps = false;
  examples.forEach((example, i) => {
    const prediction = predictions[i] ?? '';
    const correct = prediction.trim() === example.target.trim();
    const answer = predictedAnswer(prediction, example);
    const symbolic = answer !== undefined && isEquivalent(answer, example.answer);
    if (answer !== undefined && normalizeAnswer(answer) === normalizeAnswer(example.answer)) answerExact++;
    if (correct) exact++;
    if (symbolic) symbolicCount++;
    else {
      const cls = classifyError(answer, example.answer, plainPrompt(example));
      taxonomy[cls] = (taxonomy[cls] ?? 0) + 1;
    }
    if (countSteps(example.target).total > 0) {
      anyTargetSteps = true;
      const s = countSteps(prediction);
      stepsTotal += s.total;
      stepsCorrect += s.correct;
    }
    const digits = digitAccuracy(answer, example.answer);
    digitsTotal += digits;
    const bucket = buckets.get(example.length) ?? { n: 0, correct: 0, digits: 0 };
    bucket.n++;
    bucket.digits += digits;
    if (correct) bucket.correct++;
    buckets.set(example.length, bucket);
    problems.push({
      id: example.id,
      split,
      length: example.length,
      correct,
      symbolic,
      digitAccuracy: digits,
      prediction,
      target: example.target,
    });
  });
  const n = examples.length;
  const perLength: Scores['perLength'] = {};
  for (const [length, b] of [...buckets].sort((a, b) => a[0] - b[0]))
    perLength[String(length)] = { n: b.n, exactMatch: b.correct / b.n, digitAccuracy: b.digits / b.n };
  return {
    exactMatch: n === 0 ? 0 : exact / n,
    answerMatch: n === 0 ? 0 : answerExact / n,
    symbolicAccuracy: n === 0 ? 0 : symbolicCount / n,
    stepAccuracy: anyTargetSteps ? (stepsTotal === 0 ? 0 : stepsCorrect / stepsTotal) : null,
    perLength,
    digitAccuracy: n === 0 ? 0 : digitsTotal / n,
    longestLength90: longestPassingLength(perLength, 0.9),
    errorTaxonomy: taxonomy,
    problems,
  };
}

/**
 * Mean entropy (nats) of each attention row, per layer and head: maps[layer][head][query][key].
 * Rows are normalized by their sum first (masked or padded rows need not sum to 1); rows summing to 0
 * are skipped; a head with no usable row gets 0.
 */
export function attentionEntropy(maps: number[][][][]): number[][] {
  return maps.map((layer) =>
    layer.map((head) => {
      let total = 0;
      let rows = 0;
      for (const row of head) {
        let sum = 0;
        for (const p of row) if (p > 0 && Number.isFinite(p)) sum += p;
        if (sum <= 0) continue;
        let h = 0;
        for (const p of row) {
          if (p > 0 && Number.isFinite(p)) {
            const q = p / sum;
            h -= q * Math.log(q);
          }
        }
        total += h;
        rows++;
      }
      return rows === 0 ? 0 : total / rows;
    }),
  );
}

/** Element-wise (weighted) mean of several [layer][head] entropy tables, e.g. one per example. */
export function mergeEntropy(tables: readonly number[][][], weights?: readonly number[]): number[][] {
  const first = tables[0];
  if (first === undefined) return [];
  if (weights !== undefined && weights.length !== tables.length) {
    throw new EvalError(`mergeEntropy: ${tables.length} tables but ${weights.length} weights`);
  }
  const totalWeight = weights === undefined ? tables.length : weights.reduce((a, b) => a + b, 0);
  return first.map((layer, l) =>
    layer.map((_, h) => {
      if (totalWeight <= 0) return 0;
      let s = 0;
      tables.forEach((t, k) => {
        const v = t[l]?.[h];
        if (v === undefined) throw new EvalError(`mergeEntropy: table ${k} has no layer ${l} head ${h}`);
        s += v * (weights?.[k] ?? 1);
      });
      return s / totalWeight;
    }),
  );
}
