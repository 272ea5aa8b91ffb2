// AdamW against a hand-computed reference, the learning-rate schedule, and global-norm clipping.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { AdamW, clipByGlobalNorm, globalNorm } from '../../src/train/adamw.ts';
import { learningRateAt } from '../../src/train/schedule.ts';

before(async () => {
  await tf.setBackend('cpu');
});

const close = (actual: ArrayLike<number>, expected: number[], tol: number, what: string): void => {
  assert.equal(actual.length, expected.length, `${what}: length`);
  expected.forEach((e, i) =>
    assert.ok(Math.abs((actual[i] as number) - e) <= tol, `${what}[${i}]: ${actual[i]} vs ${e}`),
  );
};

void test('AdamW matches two hand-computed steps, with decoupled decay only on matrices', async () => {
  const w = tf.variable(tf.tensor2d([[1, -2]]), true);
  const b = tf.variable(tf.tensor1d([0.5]), true);
  const [lr, wd, b1, b2, eps] = [0.01, 0.1, 0.9, 0.98, 1e-8];
  const opt = new AdamW([w, b], { beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd });
  const grads = [
    [[0.5, -1], [2]],
    [[0.1, 0.3], [-1]],
  ];
  // Reference: PyTorch AdamW semantics, written out in float64.
  let p = [1, -2, 0.5];
  let m = [0, 0, 0];
  let v = [0, 0, 0];
  const decays = [true, true, false];
  for (let t = 1; t <= 2; t++) {
    const [gw, gb] = grads[t - 1] as [number[], number[]];
    const g = [...gw, ...gb];
    const norm = opt.apply([tf.tensor2d([gw]), tf.tensor1d(gb)], lr);
    close(await norm.data(), [Math.hypot(...g)], 1e-5, 'grad norm');
    norm.dispose();
    m = m.map((mi, i) => b1 * mi + (1 - b1) * (g[i] as number));
    v = v.map((vi, i) => b2 * vi + (1 - b2) * (g[i] as number) ** 2);
    p = p.map((pi, i) => {
      const mhat = (m[i] as number) / (1 - b1 ** t);
      const vhat = (v[i] as number) / (1 - b2 ** t);
      const decayed = decays[i] ? pi * (1 - lr * wd) : pi;
      return decayed - (lr * mhat) / (Math.sqrt(vhat) + eps);
    });
  }
  close([...(await w.data()), ...(await b.data())], p, 1e-6, 'params');
  close([...(await opt.m[0]!.data()), ...(await opt.m[1]!.data())], m, 1e-6, 'm');
  close([...(await opt.v[0]!.data()), ...(await opt.v[1]!.data())], v, 1e-7, 'v');
  assert.equal(opt.step, 2);
  // The state round-trips into a fresh optimizer.
  const state = await opt.getState();
  const other = new AdamW([w, b], { beta1: b1, beta2: b2 });
  other.setState(state);
  assert.equal(other.step, 2);
  close(await other.v[0]!.data(), v.slice(0, 2), 1e-7, 'restored v');
  opt.dispose();
  other.dispose();
  tf.dispose([w, b]);
});

void test('AdamW with clipping uses the clipped gradient', async () => {
  const w = tf.variable(tf.tensor1d([0, 0]), true);
  const opt = new AdamW([w], { clipNorm: 1, beta1: 0, beta2: 0, epsilon: 0 });
  // beta1 = beta2 = 0: update = lr * g / |g| elementwise, so the sign survives but the moment shows the clip.
  const norm = opt.apply([tf.tensor1d([3, 4])], 0.1);
  close(await norm.data(), [5], 1e-6, 'norm before clipping');
  close(await opt.m[0]!.data(), [0.6, 0.8], 1e-6, 'm is the clipped gradient');
  close(await w.data(), [-0.1, -0.1], 1e-6, 'params');
  opt.dispose();
  w.dispose();
});

void test('clipByGlobalNorm scales only above the threshold', async () => {
  const grads = [tf.tensor1d([3]), tf.tensor2d([[4]])];
  const big = clipByGlobalNorm(grads, 1);
  close(await big.norm.data(), [5], 1e-6, 'norm');
  close([...(await big.clipped[0]!.data()), ...(await big.clipped[1]!.data())], [0.6, 0.8], 1e-6, 'clipped');
  const small = clipByGlobalNorm(grads, 10);
  close([...(await small.clipped[0]!.data()), ...(await small.clipped[1]!.data())], [3, 4], 1e-6, 'unclipped');
  const off = clipByGlobalNorm(grads, 0);
  close([...(await off.clipped[0]!.data()), ...(await off.clipped[1]!.data())], [3, 4], 1e-6, 'clipping off');
  const n = globalNorm([]);
  close(await n.data(), [0], 0, 'empty norm');
  tf.dispose([...grads, ...big.clipped, big.norm, ...small.clipped, small.norm, ...off.clipped, off.norm, n]);
});

void test('schedule: linear warmup to the peak, cosine down to the floor', () => {
  const spec = { peak: 1e-3, warmupSteps: 10, totalSteps: 110, minRatio: 0.1 } as const;
  assert.ok(Math.abs(learningRateAt(0, spec) - 1e-4) < 1e-12);
  assert.ok(Math.abs(learningRateAt(4, spec) - 5e-4) < 1e-12);
  assert.ok(Math.abs(learningRateAt(9, spec) - 1e-3) < 1e-12);
  assert.ok(Math.abs(learningRateAt(10, spec) - 1e-3) < 1e-12);
  // Halfway through the decay: floor + (peak - floor) / 2.
  assert.ok(Math.abs(learningRateAt(60, spec) - 5.5e-4) < 1e-12);
  assert.ok(Math.abs(learningRateAt(110, spec) - 1e-4) < 1e-12);
  assert.ok(Math.abs(learningRateAt(500, spec) - 1e-4) < 1e-12, 'stays at the floor past the end');
  for (let s = 10; s < 110; s++) assert.ok(learningRateAt(s + 1, spec) <= learningRateAt(s, spec), `monotone at ${s}`);
  const linear = { ...spec, decay: 'linear' } as const;
  assert.ok(Math.abs(learningRateAt(60, linear) - 5.5e-4) < 1e-12);
  assert.ok(Math.abs(learningRateAt(35, linear) - (1e-3 - 9e-4 * 0.25)) < 1e-12);
  assert.equal(learningRateAt(0, { peak: 2, warmupSteps: 0, totalSteps: 10, decay: 'constant' }), 2);
});
