// Addition, multiplication and multi-step arithmetic generators. Numbers are built digit by digit and
// computed with BigInt, so 16-digit operands (and 32-digit products) are exact.
import type { Rng } from './rng.ts';
import type { Generator, Problem } from './problem.ts';
import { boolParam, intParam, type ParamSchema, type ParamValues } from './params.ts';

const MAX_DIGITS = 64;

const digitsSchema: ParamSchema = {
  minDigits: { kind: 'int', min: 1, max: MAX_DIGITS, default: 1 },
  maxDigits: { kind: 'int', min: 1, max: MAX_DIGITS, default: 3 },
  reverse: { kind: 'bool', default: false },
  reverseAll: { kind: 'bool', default: false },
  padOperands: { kind: 'bool', default: false },
  padAnswer: { kind: 'bool', default: false },
  spaced: { kind: 'bool', default: false },
  spaceDigits: { kind: 'bool', default: false },
};

function checkDigits(params: ParamValues): string[] {
  const errors: string[] = [];
  if (intParam(params, 'minDigits') > intParam(params, 'maxDigits'))
    errors.push(
      `task.params.maxDigits: must be >= minDigits (got minDigits ${params.minDigits}, maxDigits ${params.maxDigits})`,
    );
  if (boolParam(params, 'spaced') && boolParam(params, 'spaceDigits'))
    errors.push(
      'task.params.spaceDigits: spaced already puts a space between every two characters; set one of the two',
    );
  return errors;
}

/** A uniformly random number with exactly `digits` digits (0-9 allowed when digits is 1). */
export function randomDigits(rng: Rng, digits: number): string {
  let s = String(rng.int(digits === 1 ? 0 : 1, 9));
  for (let i = 1; i < digits; i++) s += String(rng.int(0, 9));
  return s;
}

/** Two operands: the longer has a length uniform in [min, max] (balanced length buckets), the other in [min, that]. */
function operands(rng: Rng, params: ParamValues): [string, string, number] {
  const min = intParam(params, 'minDigits');
  const length = rng.int(min, intParam(params, 'maxDigits'));
  const other = rng.int(min, length);
  const long = randomDigits(rng, length);
  const short = randomDigits(rng, other);
  return rng.next() < 0.5 ? [long, short, length] : [short, long, length];
}

/**
 * The formats of the literature, as options (the plain "123+45=168" stays the default):
 *   padOperands  both operands zero-padded to the longer one's digits     "123+045=168"
 *   padAnswer    the answer zero-padded to the digits it can have: n+1 for a sum of n-digit operands, the sum of
 *                the operands' digits for a product                        "123+45=0168"
 *   reverse      the answer least-significant digit first                 "123+45=861"
 *   reverseAll   every number least-significant digit first               "321+54=861"
 * The answer field stays in ordinary order without padding ("168"); the split key is the problem, not its format.
 */
export function formatBinary(
  op: '+' | '*',
  a: string,
  b: string,
  params: ParamValues,
): Pick<Problem, 'prompt' | 'target' | 'answer' | 'reversed' | 'reversedOperands' | 'padded' | 'spaced'> {
  const answer = (op === '+' ? BigInt(a) + BigInt(b) : BigInt(a) * BigInt(b)).toString();
  const reverseAll = boolParam(params, 'reverseAll');
  const reverse = boolParam(params, 'reverse') || reverseAll;
  const padOperands = boolParam(params, 'padOperands');
  const padAnswer = boolParam(params, 'padAnswer');
  const spaced = boolParam(params, 'spaced');
  const spaceDigits = boolParam(params, 'spaceDigits');
  const width = Math.max(a.length, b.length);
  const [x, y] = padOperands ? [a.padStart(width, '0'), b.padStart(width, '0')] : [a, b];
  const answerWidth = op === '+' ? width + 1 : x.length + y.length;
  const written = padAnswer ? answer.padStart(answerWidth, '0') : answer;
  const text = spaced ? spaceOut : (s: string) => s;
  const number = (s: string): string => {
    const ordered = reverseAll ? reverseString(s) : s;
    return spaceDigits ? spaceOut(ordered) : ordered;
  };
  return {
    prompt: text(`${number(x)}${op}${number(y)}=`),
    target: text(reverse ? reverseString(written) : written),
    answer,
    ...(reverse ? { reversed: true } : {}),
    ...(reverseAll ? { reversedOperands: true } : {}),
    ...(padOperands || padAnswer ? { padded: true } : {}),
    ...(spaced || spaceDigits ? { spaced: true } : {}),
  };
}

function binary(op: '+' | '*', rng: Rng, params: ParamValues): Problem {
  const [a, b, length] = operands(rng, params);
  return {
    ...formatBinary(op, a, b, params),
    length,
    holdoutKey: a < b ? `${a}${op}${b}` : `${b}${op}${a}`,
  };
}

/**
 * "123+45=" -> "1 2 3 + 4 5 =": one space between every two characters (the `spaced` format; `spaceDigits` applies it
 * to each operand alone: "1 2 3+4 5=", answer unspaced).
 */
export function spaceOut(s: string): string {
  return Array.from(s).join(' ');
}

export function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

// Default params {minDigits 1, maxDigits 3}: prompt <= 8 chars ("999+999="), target <= 4: 12 chars at most.
export const addition: Generator = {
  schema: digitsSchema,
  check: checkDigits,
  generate: (rng, params) => binary('+', rng, params),
};

// Default params {minDigits 1, maxDigits 3}: prompt <= 8 chars, target <= 6: 14 chars at most.
export const multiplication: Generator = {
  schema: digitsSchema,
  check: checkDigits,
  generate: (rng, params) => binary('*', rng, params),
};

type Op = '+' | '-' | '*';

/**
 * "3*4+5-2=\n" -> "3*4=12\n12+5=17\n17-2=15\n#### 15": products first (left to right), then sums and
 * differences left to right, one "a op b=c" line per operator. A '-' that would go below zero becomes
 * '+', so every intermediate value is a non-negative integer. length = number of operators.
 * Default params {minOps 1, maxOps 3, maxValue 20}: at most 61 chars (prompt + target), measured over 200k draws.
 */
export const arithmetic: Generator = {
  schema: {
    minOps: { kind: 'int', min: 1, max: 12, default: 1 },
    maxOps: { kind: 'int', min: 1, max: 12, default: 3 },
    maxValue: { kind: 'int', min: 1, max: 1_000_000, default: 20 },
  },
  check: (params) =>
    intParam(params, 'minOps') > intParam(params, 'maxOps')
      ? [`task.params.maxOps: must be >= minOps (got minOps ${params.minOps}, maxOps ${params.maxOps})`]
      : [],
  generate(rng, params) {
    const n = rng.int(intParam(params, 'minOps'), intParam(params, 'maxOps'));
    const maxValue = intParam(params, 'maxValue');
    const values = Array.from({ length: n + 1 }, () => BigInt(rng.int(1, maxValue)));
    const ops: Op[] = Array.from({ length: n }, () => rng.pick(['+', '-', '*'] as const));
    const steps: string[] = [];
    // Collapse products into terms, recording each multiplication as a step.
    const terms: bigint[] = [values[0] ?? 0n];
    const termOps: number[] = []; // index into ops of the +/- before each term after the first
    for (let i = 0; i < n; i++) {
      const op = ops[i];
      const v = values[i + 1] ?? 0n;
      if (op === '*') {
        const last = terms.length - 1;
        const prev = terms[last] ?? 0n;
        const product = prev * v;
        steps.push(`${prev}*${v}=${product}`);
        terms[last] = product;
      } else {
        terms.push(v);
        termOps.push(i);
      }
    }
    let running = terms[0] ?? 0n;
    for (let t = 1; t < terms.length; t++) {
      const opIndex = termOps[t - 1] ?? 0;
      const term = terms[t] ?? 0n;
      if (ops[opIndex] === '-' && running < term) ops[opIndex] = '+';
      const op = ops[opIndex];
      const next = op === '-' ? running - term : running + term;
      steps.push(`${running}${op}${term}=${next}`);
      running = next;
    }
    let prompt = String(values[0]);
    for (let i = 0; i < n; i++) prompt += `${ops[i]}${values[i + 1]}`;
    const answer = running.toString();
    // "=\n": the steps start on their own line, so prompt + target never reads as one long equation.
    return { prompt: `${prompt}=\n`, target: `${steps.join('\n')}\n#### ${answer}`, answer, length: n };
  },
};
