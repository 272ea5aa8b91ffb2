// Reasoning-step checking: finds every "a op b = c" (also chains like "a+b+c=d", and GSM8K's
// "<<a*b=c>>") in a text and checks the arithmetic. Integer +, -, * are checked exactly with BigInt;
// with division or decimals, a claimed result with k decimals is right when it is the true value
// rounded to k places (so "10/4=2.5" and "10/3=3.33" pass, "10/3=3" does not).

export interface CheckedStep {
  /** The matched text, e.g. "12+5=17". */
  text: string;
  /** The value of the left side (NaN when it divides by zero). */
  value: number;
  claimed: string;
  correct: boolean;
}

const NUM = String.raw`\$?\d+(?:,\d{3})*(?:\.\d+)?`;
const OP = String.raw`[-+*/×÷]`;
// Not preceded by a word character, digit or '.', so "x3+4=7" or "1.5+1=2.5" are not cut in the middle.
const STEP = new RegExp(String.raw`(?<![\w.,)$])(-?${NUM}(?:\s*${OP}\s*-?${NUM})+)\s*=\s*(-?${NUM})`, 'g');
const TOKEN = new RegExp(String.raw`-?${NUM}|${OP}`, 'g');

type Term = { int: bigint | null; num: number };

function parseNumber(text: string): Term {
  const clean = text.replace(/[$,]/g, '');
  return { int: /^-?\d+$/.test(clean) ? BigInt(clean) : null, num: Number(clean) };
}

/** Evaluates "a op b op c" with the usual precedence; exact when every number is an integer and there is no division. */
function evaluate(expr: string): Term {
  const tokens = expr.replace(/\s+/g, '').match(TOKEN) ?? [];
  // After a number, a leading '-' of the next token is the operator: re-split "12-3" which TOKEN reads as "12", "-3".
  const items: string[] = [];
  for (const t of tokens) {
    const last = items[items.length - 1];
    if (t.startsWith('-') && t.length > 1 && last !== undefined && !/^[-+*/×÷]$/.test(last))
      items.push('-', t.slice(1));
    else items.push(t);
  }
  const values: Term[] = [];
  const ops: string[] = [];
  let exact = true;
  for (const item of items) {
    if (/^[-+*/×÷]$/.test(item)) ops.push(item);
    else values.push(parseNumber(item));
  }
  if (values.length !== ops.length + 1) return { int: null, num: Number.NaN };
  // Products and quotients first, then sums, left to right.
  const sumTerms: Term[] = [values[0] as Term];
  const sumOps: string[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as string;
    const v = values[i + 1] as Term;
    if (op === '*' || op === '×' || op === '/' || op === '÷') {
      const last = sumTerms.pop() as Term;
      if (op === '/' || op === '÷') {
        exact = false;
        sumTerms.push({ int: null, num: v.num === 0 ? Number.NaN : last.num / v.num });
      } else {
        sumTerms.push({ int: last.int !== null && v.int !== null ? last.int * v.int : null, num: last.num * v.num });
      }
    } else {
      sumOps.push(op);
      sumTerms.push(v);
    }
  }
  let acc = sumTerms[0] as Term;
  for (let i = 0; i < sumOps.length; i++) {
    const v = sumTerms[i + 1] as Term;
    const minus = sumOps[i] === '-';
    acc = {
      int: acc.int !== null && v.int !== null ? (minus ? acc.int - v.int : acc.int + v.int) : null,
      num: minus ? acc.num - v.num : acc.num + v.num,
    };
  }
  return exact ? acc : { int: null, num: acc.num };
}

function isRight(value: Term, claimedText: string): boolean {
  const claimed = parseNumber(claimedText);
  if (value.int !== null && claimed.int !== null) return value.int === claimed.int;
  if (!Number.isFinite(value.num) || !Number.isFinite(claimed.num)) return false;
  const decimals = claimedText.split('.')[1]?.length ?? 0;
  const slack = 1e-9 * Math.max(1, Math.abs(value.num));
  if (decimals === 0) return Math.abs(value.num - claimed.num) <= slack;
  return Math.abs(value.num - claimed.num) <= 0.5 * 10 ** -decimals + slack;
}

export function extractSteps(text: string): CheckedStep[] {
  const steps: CheckedStep[] = [];
  for (const m of text.matchAll(STEP)) {
    const left = m[1] ?? '';
    const claimed = m[2] ?? '';
    const value = evaluate(left);
    steps.push({ text: m[0], value: value.num, claimed, correct: isRight(value, claimed) });
  }
  return steps;
}

/** Correct and total steps in a text. */
export function countSteps(text: string): { correct: number; total: number } {
  const steps = extractSteps(text);
  return { correct: steps.filter((s) => s.correct).length, total: steps.length };
}
