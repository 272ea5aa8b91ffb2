// The spectrum `npm run bench -- positions` reports: its eigen-solver, and what it says of the sinusoidal table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { positionSpectrum, symmetricEigenvalues } from '../../bench/positions.ts';
import { sinusoidalTable } from '../../src/model/positional/reference.ts';

void test('symmetricEigenvalues finds the eigenvalues of a matrix built from known ones', () => {
  // Q diag(5, 2, -1) Q^T with Q a rotation in the (0, 1) plane and another in the (1, 2) plane.
  const rot = (n: number, i: number, j: number, t: number): number[][] =>
    Array.from({ length: n }, (_, r) =>
      Array.from({ length: n }, (_, c) => {
        if ((r === i && c === i) || (r === j && c === j)) return Math.cos(t);
        if (r === i && c === j) return -Math.sin(t);
        if (r === j && c === i) return Math.sin(t);
        return r === c ? 1 : 0;
      }),
    );
  const mul = (a: number[][], b: number[][]): number[][] =>
    a.map((row) => b[0]!.map((_, c) => row.reduce((s, x, k) => s + x * b[k]![c]!, 0)));
  const transpose = (a: number[][]): number[][] => a[0]!.map((_, c) => a.map((row) => row[c]!));
  const q = mul(rot(3, 0, 1, 0.7), rot(3, 1, 2, -1.3));
  const m = mul(
    mul(q, [
      [5, 0, 0],
      [0, 2, 0],
      [0, 0, -1],
    ]),
    transpose(q),
  );
  const eig = symmetricEigenvalues(m);
  [5, 2, -1].forEach((want, i) => assert.ok(Math.abs(eig[i]! - want) < 1e-9, `eigenvalue ${i}: ${eig[i]} != ${want}`));
});

void test('the squared singular values add up to the centered table; past the fourth they are tiny', () => {
  const positions = 9;
  const dModel = 128;
  const rows = sinusoidalTable(positions, dModel);
  let energy = 0;
  for (let j = 0; j < dModel; j++) {
    const mean = rows.reduce((s, r) => s + r[j]!, 0) / positions;
    for (const r of rows) energy += (r[j]! - mean) ** 2;
  }
  const s = positionSpectrum(positions, dModel);
  assert.equal(s.length, positions - 1);
  const total = s.reduce((sum, x) => sum + x * x, 0);
  assert.ok(Math.abs(total - energy) < 1e-6 * energy, `sum of s^2 ${total} != centered energy ${energy}`);
  for (let k = 1; k < s.length; k++) assert.ok(s[k]! <= s[k - 1]!, 'sorted largest first');
  // Position reaches the model through about four directions over a 9-token prompt: the rest hold < 0.1% of it.
  const tail = s.slice(4).reduce((sum, x) => sum + x * x, 0);
  assert.ok(tail < 1e-3 * total, `tail energy ${tail} of ${total}`);
});
