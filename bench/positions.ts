// `npm run bench -- positions [--positions 9] [--d-model 128]`: how many independent directions the sinusoidal
// table gives a model to tell the positions of a short prompt apart. The rows PE[0..n-1] of Vaswani et al.'s table
// (src/model/positional/reference.ts), centered over those positions (a constant offset says nothing about
// position), have singular values s_1 >= s_2 >= ...; a linear read-out of position (a query, a key, a value) can
// only realize a function of position whose weight on direction k is ~1/s_k, so a direction with a tiny s_k is
// one the model can use only through huge weights. The control prompt (BOS a a a + b b b =) has 9 positions.
import { presetModel } from '../src/train/job.ts';
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

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const option = (name: string, fallback: number): number => {
    const i = args.indexOf(name);
    if (i < 0) return fallback;
    const n = Number(args[i + 1]);
    if (!Number.isInteger(n) || n < 2) throw new Error(`${name} must be an integer >= 2`);
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
  return results;
}
