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
