// Why a final answer is wrong. Both answers are compared in normal reading order (a reversed-output
// task's prediction is reversed back first) after normalizeAnswer. Classes, checked in this order:
//   format        no parseable answer: empty, missing "####" where the target has one, not a number or
//                 expression mathjs can parse (see parseSafe), or an expression with variables (words
//                 parse as variables) where the target is a number
//   carry         both integers, d = prediction - target != 0, and d is explained by carries:
//                 - when the prompt is an addition "a+b=" (operands known): d = sum of s_k * 10^k over
//                   distinct k >= 1 with s_k = -1 only where the true sum carries into position k (a dropped
//                   carry) and s_k = +1 only where it does not (an invented one). The signed decomposition
//                   is unique (residues 1 and 9 mod 10 force the sign), so this is an exact test;
//                 - otherwise: |d| is a sum of distinct 10^k, k >= 1, all of one sign (its digits are only
//                   0s and 1s and it ends in 0): what dropping or adding carries does.
//                 Checked before wrong_length because a dropped final carry shortens the answer (57+48 -> 95).
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

/** carryIn[k] is true when the sum a + b carries into digit position k (k = 0 is the units). */
export function additionCarries(a: string, b: string): boolean[] {
  const x = [...a].reverse().map(Number);
  const y = [...b].reverse().map(Number);
  const carries = [false];
  let carry = 0;
  for (let k = 0; k < Math.max(x.length, y.length); k++) {
    carry = (x[k] ?? 0) + (y[k] ?? 0) + carry >= 10 ? 1 : 0;
    carries.push(carry === 1);
  }
  return carries;
}

function explainedByCarries(diff: bigint, carryIn: boolean[] | undefined): boolean {
  if (diff === 0n || diff % 10n !== 0n) return false;
  if (carryIn === undefined) {
    const abs = (diff < 0n ? -diff : diff).toString();
    return /^[01]+0$/.test(abs);
  }
  let r = diff / 10n;
  for (let k = 1; r !== 0n; k++) {
    const residue = ((r % 10n) + 10n) % 10n;
    if (residue === 0n) {
      r /= 10n;
      continue;
    }
    if (residue !== 1n && residue !== 9n) return false;
    const sign = residue === 1n ? 1n : -1n;
    // A dropped carry needs a real carry there; an invented one needs none.
    if ((sign === -1n) !== (carryIn[k] === true)) return false;
    r = (r - sign) / 10n;
  }
  return true;
}

const ADDITION_PROMPT = /^\s*(\d+)\s*\+\s*(\d+)\s*=\s*$/;

/**
 * Classifies a wrong answer; `predicted` is undefined when the prediction had no answer at all. With the
 * problem's prompt, carries of an addition are checked against the operands.
 */
export function classifyError(predicted: string | undefined, target: string, prompt?: string): ErrorClass {
  const p = normalizeAnswer(predicted ?? '');
  const t = normalizeAnswer(target);
  if (p === '') return ERROR_CLASSES.format;
  if (canonicalDecimal(p) === undefined) {
    const node = parseSafe(p);
    // A numeric target needs a number or a variable-free expression: "forty-two" parses, but as forty - two.
    if (node === undefined || (canonicalDecimal(t) !== undefined && hasVariables(node))) return ERROR_CLASSES.format;
  }
  if (!INTEGER.test(p) || !INTEGER.test(t)) return ERROR_CLASSES.other;
  const operands = prompt === undefined ? null : ADDITION_PROMPT.exec(prompt);
  const carryIn = operands ? additionCarries(operands[1] ?? '', operands[2] ?? '') : undefined;
  if (explainedByCarries(BigInt(p) - BigInt(t), carryIn)) return ERROR_CLASSES.carry;
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
