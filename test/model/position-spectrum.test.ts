// The measures `npm run bench -- positions` reports (spectrum, address margins): their solvers, and what they say of the sinusoidal table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressMargin,
  controlMargins,
  hullDistance,
  positionSpectrum,
  projectToSimplex,
  symmetricEigenvalues,
} from '../../bench/positions.ts';
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

void test('hullDistance: the distance from the origin to the convex hull of points', () => {
  const close = (a: number, b: number, what: string): void =>
    assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} != ${b}`);
  close(hullDistance([[3, 4]]), 5, 'one point: its norm');
  close(
    hullDistance([
      [1, 0],
      [0, 1],
    ]),
    Math.SQRT1_2,
    'segment (1,0)-(0,1): its midpoint',
  );
  close(
    hullDistance([
      [2, 1],
      [2, -1],
      [3, 0],
    ]),
    2,
    'triangle: its nearest edge',
  );
  close(
    hullDistance([
      [1, 0],
      [-1, 0],
      [0, 1],
    ]),
    0,
    'origin inside the hull',
  );
  assert.deepEqual(projectToSimplex([0.2, 0.3, 0.5]), [0.2, 0.3, 0.5]);
  assert.deepEqual(projectToSimplex([2, 0, -1]), [1, 0, 0]);
});

void test('address margins: a unit direction reaches the margin and none does better; sinusoidal tens digits are the hardest', () => {
  const table = sinusoidalTable(9, 128);
  const digits = [1, 2, 3, 5, 6, 7];
  // Brute force in the plane of two rows' difference cannot beat the optimum: a random search gives a lower bound.
  const margin = addressMargin(table, [2], digits);
  const others = digits.filter((p) => p !== 2);
  let best = -Infinity;
  for (let trial = 0; trial < 2000; trial++) {
    const u = table[2]!.map((x, j) => x - table[others[trial % others.length]!]![j]! + Math.sin(trial * 7.1 + j));
    const norm = Math.hypot(...u);
    const gap = Math.min(
      ...others.map((o) => u.reduce((s, x, j) => s + (x * (table[2]![j]! - table[o]![j]!)) / norm, 0)),
    );
    best = Math.max(best, gap);
  }
  assert.ok(best <= margin + 1e-9, `a direction did better (${best}) than the margin (${margin})`);
  // Scaling the table scales the margin.
  const doubled = table.map((r) => r.map((x) => 2 * x));
  assert.ok(Math.abs(addressMargin(doubled, [2], digits) - 2 * margin) < 1e-6);
  // The same margins from scipy's SLSQP on the same problem (an independent solver): 0.710 and 0.247.
  assert.ok(Math.abs(margin - 0.71) < 0.001, `tens digit margin ${margin}`);
  const m = controlMargins(128);
  assert.ok(Math.abs(m['tens_pair']!.sinusoidal - 0.2473) < 0.001, `tens pair margin ${m['tens_pair']!.sinusoidal}`);
  const pairs = [m['hundreds_pair']!, m['tens_pair']!, m['units_pair']!];
  assert.ok(m['tens_pair']!.sinusoidal < 0.5 * Math.min(m['hundreds_pair']!.sinusoidal, m['units_pair']!.sinusoidal));
  for (const p of pairs) assert.ok(p.random > 5 * p.sinusoidal, `random ${p.random} vs sinusoidal ${p.sinusoidal}`);
  // The spaced format puts the digits two positions apart: the table's rows differ twice the angle, and the tens
  // pair's margin grows 7-fold; the same as picking the rows of "BOS 1 _ 2 _ 3 _ + _ 4 _ 5 _ 6" by hand.
  const spaced = controlMargins(128, 2);
  assert.ok(
    Math.abs(spaced['tens_pair']!.sinusoidal - 1.86) < 0.01,
    `spaced tens pair ${spaced['tens_pair']!.sinusoidal}`,
  );
  const rows = sinusoidalTable(17, 128);
  const spacedDigits = [1, 3, 5, 9, 11, 13];
  assert.ok(Math.abs(addressMargin(rows, [3, 11], spacedDigits) - spaced['tens_pair']!.sinusoidal) < 1e-9);
  // A shift of every position rotates each sin/cos pair alike, so the sinusoidal margins depend only on the
  // differences between positions: rows 2, 4, ..., 14 give the same. Those are the rows sinusoidalStride 2 reads
  // for the unspaced prompt's digits, so the stride buys the spaced margins without the spaces; the tiny preset's
  // stride 4 reads rows 4, 8, 12 and 20, 24, 28, whose tens pair margin is spacing 4's (3.22, 13 times stride 1's).
  const shifted = spacedDigits.map((p) => p + 1);
  assert.ok(Math.abs(addressMargin(rows, [4, 12], shifted) - spaced['tens_pair']!.sinusoidal) < 1e-6);
  const stride4 = controlMargins(128, 4)['tens_pair']!.sinusoidal;
  assert.ok(Math.abs(stride4 - 3.22) < 0.01, `stride 4 tens pair ${stride4}`);
  assert.ok(Math.abs(addressMargin(sinusoidalTable(29, 128), [8, 24], [4, 8, 12, 20, 24, 28]) - stride4) < 1e-6);
  // Only the operands' digits spaced ("1 2 3+4 5 6="): digits at 1, 3, 5 and 7, 9, 11; the tens pair (3, 9)
  // nearly as far apart as spaced throughout (1.78), the hundreds and units pairs less so.
  const operands = controlMargins(128, 1, true);
  assert.ok(Math.abs(addressMargin(rows, [3, 9], [1, 3, 5, 7, 9, 11]) - operands['tens_pair']!.sinusoidal) < 1e-9);
  assert.ok(
    Math.abs(operands['tens_pair']!.sinusoidal - 1.78) < 0.01,
    `tens pair ${operands['tens_pair']!.sinusoidal}`,
  );
  assert.ok(operands['units_pair']!.sinusoidal < spaced['units_pair']!.sinusoidal);
});
