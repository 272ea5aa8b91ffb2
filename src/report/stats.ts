// The statistics behind the report, on plain numbers: seeded bootstrap confidence intervals (hierarchical:
// seeds, then problems within each seed), the exact McNemar test for paired correctness, Holm's step-down
// correction, and mean reciprocal rank. Each is unit-tested against hand-computed values.
import { Rng } from '../data/rng.ts';

/** One resampling unit: a ratio statistic is sum(num) / sum(den); a plain mean has den = 1 for every unit. */
export interface Unit {
  num: number;
  den: number;
}

export interface Interval {
  mean: number;
  lo: number;
  hi: number;
  /** Units (problems) behind the estimate. */
  n: number;
}

export interface BootstrapOptions {
  /** Resamples (default 1000). */
  resamples?: number;
  /** Seed of the resampling RNG, so a report is reproducible (default 0). */
  seed?: number;
  /** Coverage (default 0.95). */
  level?: number;
}

function ratio(groups: readonly (readonly Unit[])[]): number {
  let num = 0;
  let den = 0;
  for (const g of groups) {
    for (const u of g) {
      num += u.num;
      den += u.den;
    }
  }
  return den === 0 ? Number.NaN : num / den;
}

/** Linear-interpolated quantile of sorted values (type 7, as R and numpy default). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

/**
 * Percentile bootstrap CI of sum(num)/sum(den) over `groups` (one group per seed). Each resample draws the
 * groups with replacement, then units within each drawn group with replacement, so both seed-to-seed and
 * problem-to-problem variation widen the interval. Empty input gives NaN.
 */
export function bootstrapCI(groups: readonly (readonly Unit[])[], options: BootstrapOptions = {}): Interval {
  const resamples = options.resamples ?? 1000;
  const level = options.level ?? 0.95;
  const nonEmpty = groups.filter((g) => g.length > 0);
  const n = nonEmpty.reduce((a, g) => a + g.length, 0);
  const mean = ratio(nonEmpty);
  if (n === 0 || !Number.isFinite(mean)) return { mean: Number.NaN, lo: Number.NaN, hi: Number.NaN, n };
  const rng = new Rng(options.seed ?? 0);
  const stats: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let num = 0;
    let den = 0;
    for (let gi = 0; gi < nonEmpty.length; gi++) {
      const g = nonEmpty[Math.floor(rng.next() * nonEmpty.length)] as readonly Unit[];
      for (let i = 0; i < g.length; i++) {
        const u = g[Math.floor(rng.next() * g.length)] as Unit;
        num += u.num;
        den += u.den;
      }
    }
    if (den > 0) stats.push(num / den);
  }
  stats.sort((a, b) => a - b);
  const alpha = (1 - level) / 2;
  return { mean, lo: quantile(stats, alpha), hi: quantile(stats, 1 - alpha), n };
}

/** Bootstrap of a plain mean of values (one group). */
export function bootstrapMean(values: readonly number[], options: BootstrapOptions = {}): Interval {
  return bootstrapCI([values.filter((v) => Number.isFinite(v)).map((v) => ({ num: v, den: 1 }))], options);
}

function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

export interface McNemarResult {
  /** A right, B wrong. */
  b: number;
  /** A wrong, B right. */
  c: number;
  /** Two-sided exact p-value: P(X <= min(b,c)) * 2 under Binomial(b+c, 1/2), capped at 1. */
  p: number;
}

/** Exact McNemar test on the discordant pairs (b, c). No discordant pair: p = 1. */
export function mcnemarExact(b: number, c: number): McNemarResult {
  if (!Number.isInteger(b) || !Number.isInteger(c) || b < 0 || c < 0)
    throw new RangeError(`mcnemarExact needs counts, got b=${b} c=${c}`);
  const n = b + c;
  if (n === 0) return { b, c, p: 1 };
  const k = Math.min(b, c);
  // Sum in log space so thousands of discordant pairs do not underflow 0.5^n.
  let tail = 0;
  for (let i = 0; i <= k; i++) tail += Math.exp(logChoose(n, i) - n * Math.LN2);
  return { b, c, p: Math.min(1, 2 * tail) };
}

/** Paired outcomes keyed by problem: counts b and c over the keys both sides have. */
export function discordant(
  a: ReadonlyMap<string, boolean>,
  bMap: ReadonlyMap<string, boolean>,
): { b: number; c: number; n: number } {
  let b = 0;
  let c = 0;
  let n = 0;
  for (const [key, ra] of a) {
    const rb = bMap.get(key);
    if (rb === undefined) continue;
    n++;
    if (ra && !rb) b++;
    else if (!ra && rb) c++;
  }
  return { b, c, n };
}

/** Holm's step-down adjusted p-values, in the input order. */
export function holm(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => ({ p, i })).sort((x, y) => x.p - y.p);
  const adjusted = new Array<number>(m).fill(1);
  let running = 0;
  order.forEach(({ p, i }, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p));
    adjusted[i] = running;
  });
  return adjusted;
}

/**
 * Mean reciprocal rank of each name across contests (e.g. tasks): in each contest, higher score ranks first;
 * ties share the best rank among them (competition ranking). A name missing from a contest scores 0 there.
 */
export function meanReciprocalRank(
  contests: readonly ReadonlyMap<string, number>[],
  names: readonly string[],
): Map<string, number> {
  const out = new Map<string, number>(names.map((n) => [n, 0]));
  if (contests.length === 0) return out;
  for (const scores of contests) {
    const entries = [...scores].filter(([, s]) => Number.isFinite(s));
    for (const [name, s] of entries) {
      const rank = 1 + entries.filter(([, t]) => t > s).length;
      out.set(name, (out.get(name) ?? 0) + 1 / rank);
    }
  }
  for (const [name, total] of out) out.set(name, total / contests.length);
  return out;
}

export function mean(xs: readonly number[]): number {
  const ok = xs.filter((x) => Number.isFinite(x));
  return ok.length === 0 ? Number.NaN : ok.reduce((a, b) => a + b, 0) / ok.length;
}

/** Sample standard deviation (n - 1); 0 for fewer than two values. */
export function std(xs: readonly number[]): number {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length < 2) return 0;
  const m = mean(ok);
  return Math.sqrt(ok.reduce((a, b) => a + (b - m) ** 2, 0) / (ok.length - 1));
}
