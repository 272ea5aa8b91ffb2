// Plain-number forms of the positional encodings: the tensor code is tested against these, and outside tools
// (reports, checks) call them without TensorFlow.js. Each follows its paper's reference code exactly.

/** Vaswani et al. 2017: PE[p][2i] = sin(p / 10000^(2i/d)), PE[p][2i+1] = cos(p / 10000^(2i/d)). */
export function sinusoidalTable(maxLen: number, dModel: number): number[][] {
  const table: number[][] = [];
  for (let p = 0; p < maxLen; p++) {
    const row = new Array<number>(dModel);
    for (let j = 0; j < dModel; j++) {
      const twoI = j - (j % 2);
      const angle = p / Math.pow(10000, twoI / dModel);
      row[j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
    table.push(row);
  }
  return table;
}

/**
 * Press et al. 2022 (ALiBi), as in their reference code: for n a power of two, a geometric sequence starting at
 * 2^(-8/n) with that same ratio; otherwise the slopes of the closest lower power of two, followed by every other
 * slope of the next power of two until there are n.
 */
export function alibiSlopes(numHeads: number): number[] {
  if (!Number.isInteger(numHeads) || numHeads < 1)
    throw new RangeError(`alibiSlopes: numHeads must be a positive integer, got ${numHeads}`);
  const powerOfTwo = (n: number): number[] => {
    const start = Math.pow(2, -Math.pow(2, -(Math.log2(n) - 3)));
    return Array.from({ length: n }, (_, i) => start * Math.pow(start, i));
  };
  if (Number.isInteger(Math.log2(numHeads))) return powerOfTwo(numHeads);
  const closest = Math.pow(2, Math.floor(Math.log2(numHeads)));
  const extra = alibiSlopes(2 * closest)
    .filter((_, i) => i % 2 === 0)
    .slice(0, numHeads - closest);
  return [...powerOfTwo(closest), ...extra];
}

/**
 * Raffel et al. 2020 (T5), `_relative_position_bucket` of mesh-tensorflow: relativePosition = key - query.
 * Half the buckets (of the direction's share) are exact distances; the rest are log-spaced up to maxDistance,
 * beyond which everything shares the last bucket. Unidirectional (causal) maps future keys to bucket 0.
 */
export function t5RelativeBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let ret = 0;
  let n = -relativePosition;
  let buckets = numBuckets;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (n < 0) ret += buckets;
    n = Math.abs(n);
  } else {
    n = Math.max(n, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (n < maxExact) return ret + n;
  // Math.fround mirrors the float32 arithmetic of the original; truncation toward zero mirrors tf.to_int32.
  const f = Math.fround;
  const scaled = f(f(f(Math.log(f(n / maxExact))) / f(Math.log(maxDistance / maxExact))) * (buckets - maxExact));
  const large = maxExact + Math.trunc(scaled);
  return ret + Math.min(large, buckets - 1);
}

/**
 * Su et al. 2021 (RoFormer) in the rotate-half layout (GPT-NeoX / LLaMA): dimension i pairs with i + d/2, both
 * rotated by the angle position * base^(-2i/d).
 */
export function ropeRotate(vec: number[], position: number, base = 10000): number[] {
  const d = vec.length;
  if (d % 2 !== 0) throw new RangeError(`ropeRotate: the vector length must be even, got ${d}`);
  const half = d / 2;
  const out = new Array<number>(d);
  for (let i = 0; i < half; i++) {
    const angle = position * Math.pow(base, (-2 * i) / d);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const a = vec[i] ?? 0;
    const b = vec[i + half] ?? 0;
    out[i] = a * c - b * s;
    out[i + half] = b * c + a * s;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// MAPE (math-aware positional encoding): per token, the significance of its digit within its own number and a
// role. It builds on Abacus (McLeish et al. 2024: the index of a digit within its number, a random offset in
// training) and position coupling (Cho et al. 2024: digits of equal significance share a position id); what it adds
// is reading significance and roles from the token sequence alone (any digit order, multi-operand, text), the shift
// of the answer side, and a role embedding. This is the one definition the tensor code (mape.ts) follows.

/** Role ids, one learned embedding row each; operand i of an equation is `operand + min(i, MAPE_OPERAND_ROLES-1)`. */
export const MAPE_ROLE = { special: 0, operator: 1, text: 2, answer: 3, operand: 4 } as const;
/** Operand roles before the last one is shared (multi-operand arithmetic: operands 0, 1, 2, and 3 or later). */
export const MAPE_OPERAND_ROLES = 4;
export const MAPE_ROLE_COUNT = MAPE_ROLE.operand + MAPE_OPERAND_ROLES;
/** The index of every token without a significance: specials, operators, the token that predicts a number's end. */
export const MAPE_FIXED_INDEX = 0;

/** How the numbers of a problem are written: most- or least-significant digit first, operands and answer apart. */
export interface MapeNumberOrder {
  operands: 'msb' | 'lsb';
  answer: 'msb' | 'lsb';
}
export const MAPE_PLAIN_ORDER: MapeNumberOrder = { operands: 'msb', answer: 'msb' };

export interface MapeIndices {
  /** Per token: MAPE_FIXED_INDEX, 1 + significance for digits (answer side: of the digit it predicts), 1 + t for text. */
  index: number[];
  /** Per token: a MAPE_ROLE id. */
  role: number[];
}

type TokenClass = 'special' | 'digit' | 'space' | 'newline' | 'equals' | 'operator' | 'text';

// Character-level ids as in src/data/tokenizer.ts: 0..3 special, then '\n', then printable ASCII from ' '.
const FIRST_CHAR_ID = 4;
function classOf(id: number): TokenClass {
  if (!Number.isInteger(id) || id < FIRST_CHAR_ID) return 'special';
  if (id === FIRST_CHAR_ID) return 'newline';
  const code = 32 + id - FIRST_CHAR_ID - 1;
  if (code > 126) return 'special';
  const c = String.fromCharCode(code);
  if (c >= '0' && c <= '9') return 'digit';
  if (c === ' ') return 'space';
  if (c === '=') return 'equals';
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 'text';
  return 'operator';
}
const BOS_ID = 1;

function operatorChar(id: number): string {
  return String.fromCharCode(32 + id - FIRST_CHAR_ID - 1);
}

/**
 * Digits the answer of one equation is written with when it comes most-significant first, from the lengths of its
 * operands and its operator: a sum of n-digit numbers has n+1 digits (the addition task pads it to that), a product
 * the sum of the lengths, anything else the longest operand's length.
 */
export function mapeAnswerDigits(operandDigits: readonly number[], operator: string | null): number {
  if (operandDigits.length === 0) return 1;
  const longest = Math.max(...operandDigits);
  if (operator === '+') return longest + (operandDigits.length > 1 ? Math.ceil(Math.log10(operandDigits.length)) : 0);
  if (operator === '*') return operandDigits.reduce((a, b) => a + b, 0);
  return Math.max(longest, 1);
}

/**
 * MAPE's indices and roles for one token sequence (tokenizer ids). Numbers are runs of digits (a single space
 * between two digits does not end one). Per line (a newline or BOS starts one), the numbers before '=' are operands
 * 0, 1, ...; after '=' comes the answer. Significance s is the power of ten a digit stands for:
 * - operands before the sequence's first '=' (the prompt) see their whole run: s = L-1-j most-significant first,
 *   s = j least-significant first (j the digit's place in the run, L the run's digits);
 * - from the first '=' on, everything is causal (decoding writes it): least-significant first s = j; an operand
 *   written most-significant first after the prompt cannot know its length yet and degrades to s = j;
 * - the answer side is shifted by one, since a decoder's token predicts the next: '=' carries the significance of
 *   the answer's first digit, and answer digit j that of digit j+1 (least first: j+1; most first: E-2-j with E
 *   from mapeAnswerDigits, the fixed index once that falls below 0, i.e. for the token that predicts the end).
 * Letters (text) get their plain position 1 + t; specials, operators and other spaces the fixed index.
 */
export function mapeIndices(tokens: readonly number[], order: MapeNumberOrder = MAPE_PLAIN_ORDER): MapeIndices {
  const n = tokens.length;
  const cls = tokens.map(classOf);
  const index = new Array<number>(n).fill(MAPE_FIXED_INDEX);
  const role = new Array<number>(n).fill(MAPE_ROLE.operator);
  const firstEquals = cls.indexOf('equals');
  const promptEnd = firstEquals === -1 ? n : firstEquals;
  // The line: operand lengths so far, its operator, whether '=' was seen, the answer's expected digits.
  let operands: number[] = [];
  let operator: string | null = null;
  let afterEquals = false;
  let answerDigits = 1;
  // The open number: digits so far, its digit count when known (prompt operands), whether it is the answer.
  const run = { open: false, digits: 0, length: null as number | null, answer: false };
  const startRun = (answer: boolean, length: number | null): void => {
    closeRun();
    Object.assign(run, { open: true, digits: 0, length, answer });
  };
  const closeRun = (): void => {
    if (run.open && !run.answer) operands.push(run.digits);
    run.open = false;
  };
  const resetLine = (): void => {
    operands = [];
    operator = null;
    afterEquals = false;
  };
  const runLength = (from: number): number => {
    let digits = 0;
    for (let u = from; u < n; u++) {
      if (cls[u] === 'digit') digits++;
      else if (!(cls[u] === 'space' && cls[u - 1] === 'digit' && cls[u + 1] === 'digit')) break;
    }
    return digits;
  };
  const operandRole = (): number => MAPE_ROLE.operand + Math.min(operands.length, MAPE_OPERAND_ROLES - 1);
  const operandIndex = (j: number): number =>
    1 + (run.length !== null && order.operands === 'msb' ? run.length - 1 - j : j);
  const answerIndex = (next: number): number => {
    if (order.answer === 'lsb') return 1 + next;
    const s = answerDigits - 1 - next;
    return s >= 0 ? 1 + s : MAPE_FIXED_INDEX;
  };
  for (let t = 0; t < n; t++) {
    const c = cls[t];
    if (c === 'digit') {
      if (afterEquals) {
        if (!run.open || !run.answer) startRun(true, null);
        role[t] = MAPE_ROLE.answer;
        index[t] = answerIndex(run.digits + 1);
      } else {
        if (!run.open || run.answer) startRun(false, t < promptEnd ? runLength(t) : null);
        role[t] = operandRole();
        index[t] = operandIndex(run.digits);
      }
      run.digits++;
      continue;
    }
    if (c === 'space' && run.open && cls[t - 1] === 'digit') {
      if (run.answer) {
        // It predicts the answer's next digit, like the digit before it.
        role[t] = MAPE_ROLE.answer;
        index[t] = answerIndex(run.digits);
        continue;
      }
      if (t < promptEnd && cls[t + 1] === 'digit') {
        role[t] = operandRole();
        index[t] = operandIndex(run.digits);
        continue;
      }
      // After the prompt a space may or may not go on with the number: the next token decides.
      if (t >= promptEnd) continue;
    }
    closeRun();
    if (c === 'special') {
      role[t] = MAPE_ROLE.special;
      if (tokens[t] === BOS_ID) resetLine();
    } else if (c === 'newline') {
      resetLine();
    } else if (c === 'equals') {
      afterEquals = true;
      answerDigits = mapeAnswerDigits(operands, operator);
      role[t] = MAPE_ROLE.answer;
      index[t] = answerIndex(0);
    } else if (c === 'operator') {
      if (!afterEquals) operator = operatorChar(tokens[t] as number);
    } else if (c === 'text') {
      role[t] = MAPE_ROLE.text;
      index[t] = 1 + t;
    }
  }
  return { index, role };
}

/**
 * MAPE's relative variant: the bias of a (query, key) pair reads one bucket of the difference of their MAPE
 * indices (key - query), clipped to +-maxDistance, as T5's reads a bucket of the token distance. A pair where
 * either token has the fixed index (specials, operators) has no significance to compare and gets bucket 0;
 * difference d gets 1 + maxDistance + clip(d). The training offset moves both indices alike, so it never changes
 * a difference.
 */
export function mapeRelativeBucket(queryIndex: number, keyIndex: number, maxDistance: number): number {
  if (queryIndex === MAPE_FIXED_INDEX || keyIndex === MAPE_FIXED_INDEX) return 0;
  const d = Math.max(-maxDistance, Math.min(maxDistance, keyIndex - queryIndex));
  return 1 + maxDistance + d;
}

/** Buckets of mapeRelativeBucket: the fixed pair and every clipped difference -maxDistance..maxDistance. */
export function mapeRelativeBuckets(maxDistance: number): number {
  return 2 * maxDistance + 2;
}
