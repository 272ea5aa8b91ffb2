// Why a final answer is wrong. Both answers are compared in normal reading order (a reversed-output
// task's prediction is reversed back first) after normalizeAnswer. Classes, checked in this order:
//   format        no parseable answer: empty, missing "####" where the target has one, not a number or
//                 expression mathjs can parse (see parseSafe), or an expression with variables (words
//                 parse as variables) where the target is a number
//   carry         both integers and |prediction - target| is a sum of distinct powers of ten 10^k, k >= 1,
//                 all of one sign: its decimal digits are only 0s and 1s and it ends in 0. That is exactly
//                 what dropping (prediction smaller) or adding (larger) one or more carries does. Checked
//                 before wrong_length because a missed final carry shortens the answer (57+48 -> 95).
//   wrong_length  both integers, digit counts differ
//   single_digit  both integers, same digit count, exactly one digit position differs
//   other         anything else (several digits wrong, a wrong non-integer or symbolic answer)
import { canonicalDecimal, hasVariables, normalizeAnswer, parseSafe } from './equivalence.ts';

export const ERROR_CLASSES = {
  format: 'format',
  carry: 'carry',
  wrongLength: 'wrong_length',
  singleDigit: 'single_digit',
  other: 'other',
} as const;
export type ErrorClass = (typeof ERROR_CLASSES)[keyof typeof ERROR_CLASSES];

const INTEGER = /^-?\d+$/;

/** Classifies a wrong answer; `predicted` is undefined when the prediction had no answer at all. */
export function classifyError(predicted: string | undefined, target: string): ErrorClass {
  const p = normalizeAnswer(predicted ?? '');
  const t = normalizeAnswer(target);
  if (p === '') return ERROR_CLASSES.format;
  if (canonicalDecimal(p) === undefined) {
    const node = parseSafe(p);
    // A numeric target needs a number or a variable-free expression: "forty-two" parses, but as forty - two.
    if (node === undefined || (canonicalDecimal(t) !== undefined && hasVariables(node))) return ERROR_CLASSES.format;
  }
  if (!INTEGER.test(p) || !INTEGER.test(t)) return ERROR_CLASSES.other;
  const diff = BigInt(p) - BigInt(t);
  const abs = (diff < 0n ? -diff : diff).toString();
  if (diff !== 0n && /^[01]+0$/.test(abs)) return ERROR_CLASSES.carry;
  const pd = p.replace(/^-/, '').replace(/^0+(?=\d)/, '');
  const td = t.replace(/^-/, '').replace(/^0+(?=\d)/, '');
  if (pd.length !== td.length) return ERROR_CLASSES.wrongLength;
  let differing = 0;
  for (let i = 0; i < pd.length; i++) if (pd[i] !== td[i]) differing++;
  return differing === 1 ? ERROR_CLASSES.singleDigit : ERROR_CLASSES.other;
}

/** Zero counts for every class, so evaluation.json always has the same keys. */
export function emptyTaxonomy(): Record<ErrorClass, number> {
  return { format: 0, carry: 0, wrong_length: 0, single_digit: 0, other: 0 };
}
