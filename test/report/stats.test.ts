// The statistics against values computed by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bootstrapCI,
  bootstrapMean,
  discordant,
  holm,
  mcnemarExact,
  meanReciprocalRank,
  quantile,
  std,
} from '../../src/report/stats.ts';

const close = (a: number, b: number, eps = 1e-12): void => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

void test('exact McNemar: two-sided binomial tail on the discordant pairs', () => {
  assert.equal(mcnemarExact(0, 0).p, 1);
  close(mcnemarExact(3, 0).p, 0.25); // 2 * (1/2)^3
  close(mcnemarExact(1, 4).p, 0.375); // 2 * (C(5,0) + C(5,1)) / 32 = 2 * 6/32
  close(mcnemarExact(4, 1).p, 0.375); // symmetric
  close(mcnemarExact(10, 0).p, 2 / 1024);
  close(mcnemarExact(2, 8).p, (2 * (1 + 10 + 45)) / 1024); // 0.109375
  assert.equal(mcnemarExact(5, 5).p, 1); // capped
  // Large counts stay finite and tiny instead of underflowing to NaN.
  const big = mcnemarExact(2000, 1000).p;
  assert.ok(big > 0 && big < 1e-70, String(big));
  assert.throws(() => mcnemarExact(-1, 2), RangeError);
});

void test('discordant pairs count only problems both sides have', () => {
  const a = new Map([
    ['x', true],
    ['y', false],
    ['z', true],
    ['only-a', true],
  ]);
  const b = new Map([
    ['x', false],
    ['y', true],
    ['z', true],
    ['only-b', false],
  ]);
  assert.deepEqual(discordant(a, b), { b: 1, c: 1, n: 3 });
});

void test('Holm step-down adjustment, in input order', () => {
  // Sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, 2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06.
  const adj = holm([0.01, 0.04, 0.03]);
  close(adj[0] as number, 0.03);
  close(adj[1] as number, 0.06);
  close(adj[2] as number, 0.06);
  assert.deepEqual(holm([0.5, 0.9]), [1, 1]); // capped at 1 and monotone
  assert.deepEqual(holm([]), []);
});

void test('mean reciprocal rank with shared ranks on ties', () => {
  const t1 = new Map([
    ['a', 0.9],
    ['b', 0.5],
    ['c', 0.5],
  ]); // a 1, b 2, c 2
  const t2 = new Map([
    ['b', 0.8],
    ['a', 0.7],
    ['c', 0.1],
  ]); // b 1, a 2, c 3
  const mrr = meanReciprocalRank([t1, t2], ['a', 'b', 'c', 'd']);
  close(mrr.get('a') as number, 0.75);
  close(mrr.get('b') as number, 0.75);
  close(mrr.get('c') as number, (0.5 + 1 / 3) / 2);
  assert.equal(mrr.get('d'), 0); // never ranked
});

void test('quantile interpolates like numpy', () => {
  close(quantile([1, 2, 3, 4], 0.5), 2.5);
  close(quantile([1, 2, 3, 4], 0.25), 1.75);
  close(quantile([7], 0.975), 7);
  close(std([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7));
});

void test('bootstrap: seeded, reproducible, brackets the mean, degenerate data gives a point', () => {
  const groups = [
    Array.from({ length: 50 }, (_, i) => ({ num: i % 4 === 0 ? 1 : 0, den: 1 })),
    Array.from({ length: 50 }, (_, i) => ({ num: i % 2 === 0 ? 1 : 0, den: 1 })),
  ];
  const a = bootstrapCI(groups, { seed: 7, resamples: 500 });
  const b = bootstrapCI(groups, { seed: 7, resamples: 500 });
  assert.deepEqual(a, b);
  close(a.mean, (13 + 25) / 100);
  assert.equal(a.n, 100);
  assert.ok(a.lo < a.mean && a.mean < a.hi, JSON.stringify(a));
  // Two seeds that disagree widen the interval beyond a single pooled group of the same problems.
  const pooled = bootstrapCI([groups.flat()], { seed: 7, resamples: 500 });
  assert.ok(a.hi - a.lo > pooled.hi - pooled.lo, `${a.hi - a.lo} vs ${pooled.hi - pooled.lo}`);
  const c = bootstrapCI(groups, { seed: 8, resamples: 500 });
  assert.notDeepEqual(a, c);
  assert.deepEqual(bootstrapMean([0.3, 0.3, 0.3]), { mean: 0.3, lo: 0.3, hi: 0.3, n: 3 });
  const empty = bootstrapCI([[]]);
  assert.ok(Number.isNaN(empty.mean) && empty.n === 0);
  // A ratio statistic: 3 right steps of 4, 1 of 4 -> 4/8.
  close(
    bootstrapCI([
      [
        { num: 3, den: 4 },
        { num: 1, den: 4 },
      ],
    ]).mean,
    0.5,
  );
});
