// `npm run bench -- positions [--positions 9] [--d-model 128] [--spacing 1] [--space-digits]`: how well the
// sinusoidal table lets a model tell the positions of a short prompt apart. Two measures, on the rows PE[0..n-1] of Vaswani et al.'s table
// (src/model/positional/reference.ts):
// - the spectrum: the rows, centered over those positions (a constant offset says nothing about position), have
//   singular values s_1 >= s_2 >= ...; a linear read-out of position (a query, a key, a value) can only realize a
//   function of position whose weight on direction k is ~1/s_k, so a direction with a tiny s_k is one the model
//   can use only through huge weights;
// - the address margins of the control prompt (BOS a a a + b b b =): for a set of digit positions (one digit, or
//   a digit of each operand, as a head needs to add them), the largest gap that a read-out direction of norm 1
//   can open between the scores of every position in the set and every other digit position. A head has to push
//   that gap to a few nats to look at those digits alone, so it needs query and key weights ~1/margin times as
//   large. Compared with random rows of the same RMS (every position its own direction), the rows that the
//   control bench's --table random trains with. --spacing 2 measures the spaced format ("1 2 3 + 4 5 6 ="), whose
//   token k >= 1 sits at position 2k - 1; --space-digits the format with each operand's digits spaced ("1 2 3+4 5 6=").
//   A shift of every position only rotates the table's sin/cos pairs, so --spacing k also measures the unspaced
//   prompt under the model option sinusoidalStride k (token k at row k * stride; the tiny preset's stride is 4).
import { presetModel } from '../src/train/job.ts';
import { Rng } from '../src/data/rng.ts';
import { sinusoidalTable } from '../src/model/positional/reference.ts';

/** Eigenvalues of a symmetric matrix, largest first (cyclic Jacobi rotations; fine for the small n used here). */
export function symmetricEigenvalues(matrix: number[][]): number[] {
  const n = matrix.length;
  const a = matrix.map((row) => [...row]);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += (a[p]![q] as number) ** 2;
    if (off < 1e-24) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p]![q] as number;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = ((a[q]![q] as number) - (a[p]![p] as number)) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k]![p] as number;
          const akq = a[k]![q] as number;
          a[k]![p] = c * akp - s * akq;
          a[k]![q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p]![k] as number;
          const aqk = a[q]![k] as number;
          a[p]![k] = c * apk - s * aqk;
          a[q]![k] = s * apk + c * aqk;
        }
      }
    }
  }
  return a.map((row, i) => row[i] as number).sort((x, y) => y - x);
}

/** Singular values of the table's rows 0..n-1 after removing their mean row, largest first. */
export function positionSpectrum(positions: number, dModel: number): number[] {
  const rows = sinusoidalTable(positions, dModel);
  const mean = Array.from({ length: dModel }, (_, j) => rows.reduce((sum, r) => sum + (r[j] as number), 0) / positions);
  const centered = rows.map((r) => r.map((x, j) => x - (mean[j] as number)));
  const gram = centered.map((r) => centered.map((s) => r.reduce((sum, x, j) => sum + x * (s[j] as number), 0)));
  // Centering leaves at most positions - 1 independent rows.
  return symmetricEigenvalues(gram)
    .slice(0, positions - 1)
    .map((e) => Math.sqrt(Math.max(0, e)));
}

/**
 * The distance from the origin to the convex hull of `points`: by duality, the largest t such that some unit
 * vector u has u . p >= t for every point p (0 when the hull holds the origin). Minimizes |sum_i w_i p_i|^2 over
 * the simplex by accelerated projected gradient (FISTA) on the points' Gram matrix.
 */
export function hullDistance(points: number[][], iterations = 20_000): number {
  const m = points.length;
  const dot = (a: number[], b: number[]): number => a.reduce((s, x, j) => s + x * (b[j] as number), 0);
  const gram = points.map((p) => points.map((q) => dot(p, q)));
  // Step 1/L with L = 2 * (largest eigenvalue of the Gram matrix), bounded by its largest row sum of |entries|.
  const lipschitz = 2 * Math.max(...gram.map((row) => row.reduce((s, x) => s + Math.abs(x), 0)));
  const value = (w: number[]): number => w.reduce((s, wi, i) => s + wi * dot(gram[i] as number[], w), 0);
  let w = new Array<number>(m).fill(1 / m);
  let y = [...w];
  let t = 1;
  for (let k = 0; k < iterations; k++) {
    const grad = gram.map((row) => 2 * dot(row, y));
    const next = projectToSimplex(y.map((yi, i) => yi - (grad[i] as number) / lipschitz));
    const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
    y = next.map((x, i) => x + ((t - 1) / tNext) * (x - (w[i] as number)));
    w = next;
    t = tNext;
  }
  return Math.sqrt(Math.max(0, value(w)));
}

/** Euclidean projection onto {w >= 0, sum w = 1} (sort-based; Duchi et al. 2008). */
export function projectToSimplex(v: number[]): number[] {
  const sorted = [...v].sort((a, b) => b - a);
  let cumulative = 0;
  let theta = 0;
  sorted.forEach((x, k) => {
    cumulative += x;
    const candidate = (cumulative - 1) / (k + 1);
    if (x - candidate > 0) theta = candidate;
  });
  return v.map((x) => Math.max(0, x - theta));
}

/**
 * The address margin of `targets` among `candidates` (positions, rows of `table`): the largest gap a unit read-out
 * direction opens between the score of every target and of every other candidate.
 */
export function addressMargin(table: number[][], targets: number[], candidates: number[]): number {
  const others = candidates.filter((p) => !targets.includes(p));
  const differences = targets.flatMap((t) =>
    others.map((o) => (table[t] as number[]).map((x, j) => x - ((table[o] as number[])[j] as number))),
  );
  return hullDistance(differences);
}

/**
 * A table of normal(0, rms) entries drawn row by row from `seed` (Rng.normals, as the model's weights are), so with
 * an even dModel row p is the same however many rows are drawn.
 */
export function randomTable(positions: number, dModel: number, rms: number, seed: number): number[][] {
  const values = new Rng(seed).normals(positions * dModel, rms);
  return Array.from({ length: positions }, (_, p) => Array.from(values.subarray(p * dModel, (p + 1) * dModel)));
}

/** The control prompt's digit positions (BOS a a a + b b b =) and the sets a head looks at to add them. */
const DIGITS = [1, 2, 3, 5, 6, 7];
const ADDRESSES: Record<string, number[]> = {
  hundreds_a: [1],
  tens_a: [2],
  units_a: [3],
  hundreds_pair: [1, 5],
  tens_pair: [2, 6],
  units_pair: [3, 7],
};

/** The seed of the random rows, here and in the control bench's --table random (bench/model.ts). */
export const RANDOM_TABLE_SEED = 7;

/**
 * Address margins of the control prompt's digits for the sinusoidal table and for the random rows that
 * `--table random` puts in its place (normal, the table's RMS of 1/sqrt(2): each sin/cos pair squares to 1).
 * `spacing` 2: the spaced format, a space after every character, so that the unspaced prompt's token k >= 1 sits at
 * position 2k - 1 (BOS stays at 0). `spaceDigits`: only each operand's digits spaced ("1 2 3+4 5 6=").
 */
export function controlMargins(
  dModel: number,
  spacing = 1,
  spaceDigits = false,
): Record<string, { sinusoidal: number; random: number }> {
  // spaceDigits: BOS a _ a _ a + b _ b _ b =, the unspaced prompt's tokens 0-8 at these positions.
  const spacedDigits = [0, 1, 3, 5, 6, 7, 9, 11, 12];
  const position = (k: number): number =>
    spaceDigits ? (spacedDigits[k] as number) : k === 0 ? 0 : 1 + (k - 1) * spacing;
  const rows = position(8) + 1;
  const sinusoidal = sinusoidalTable(rows, dModel);
  const random = randomTable(rows, dModel, Math.SQRT1_2, RANDOM_TABLE_SEED);
  const at = (tokens: number[]): number[] => tokens.map(position);
  return Object.fromEntries(
    Object.entries(ADDRESSES).map(([name, targets]) => [
      name,
      {
        sinusoidal: addressMargin(sinusoidal, at(targets), at(DIGITS)),
        random: addressMargin(random, at(targets), at(DIGITS)),
      },
    ]),
  );
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const option = (name: string, fallback: number, min = 2): number => {
    const i = args.indexOf(name);
    if (i < 0) return fallback;
    const n = Number(args[i + 1]);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}`);
    return n;
  };
  const positions = option('--positions', 9);
  const dModel = option('--d-model', presetModel('tiny').dModel);
  const spectrum = positionSpectrum(positions, dModel);
  const top = spectrum[0] as number;
  const results: Record<string, unknown> = { positions, d_model: dModel };
  spectrum.forEach((s, k) => (results[`s${k + 1}`] = Number(s.toPrecision(3))));
  results['directions_above_1pct_of_s1'] = spectrum.filter((s) => s > 0.01 * top).length;
  results['spectrum'] = spectrum;
  const spacing = option('--spacing', 1, 1);
  results['spacing'] = spacing;
  const spaceDigits = args.includes('--space-digits');
  if (spaceDigits && spacing !== 1) throw new Error('--spacing and --space-digits: one format at a time');
  if (spaceDigits) results['space_digits'] = true;
  const margins = controlMargins(dModel, spacing, spaceDigits);
  for (const [name, m] of Object.entries(margins)) {
    results[`margin_${name}_sinusoidal`] = Number(m.sinusoidal.toPrecision(3));
    results[`margin_${name}_random`] = Number(m.random.toPrecision(3));
  }
  return results;
}
