// The wasm backend's replaced kernels (src/train/wasm-kernels.ts) against the package's own: bitwise the same
// values for every shape and dtype tried, the same training run bit for bit, and no tensor or byte left behind
// (shared data is reference counted: a clone outlives the tensor it came from).
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { createSource } from '../../src/data/tasks.ts';
import { tokenizer } from '../../src/data/tokenizer.ts';
import { selectBackend } from '../../src/train/backend.ts';
import { buildJobSpec } from '../../src/train/job.ts';
import { buildModel } from '../../src/train/tf-workload.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { useWasmKernels } from '../../src/train/wasm-kernels.ts';

before(async () => {
  await selectBackend('wasm');
});

/** A small deterministic generator, so that a failure names a reproducible case. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Runs `f` under the stock kernels and under the fast ones; returns both results' values. */
function both(f: () => tf.Tensor | tf.Tensor[]): { stock: unknown; fast: unknown } {
  const run = (which: 'stock' | 'fast'): unknown => {
    useWasmKernels(which);
    return tf.tidy(() => {
      const out = f();
      return (Array.isArray(out) ? out : [out]).map((t) => ({ shape: t.shape, dtype: t.dtype, values: t.dataSync() }));
    });
  };
  try {
    return { stock: run('stock'), fast: run('fast') };
  } finally {
    useWasmKernels('fast');
  }
}

function randomTensor(shape: number[], dtype: 'float32' | 'int32' | 'bool', rand: () => number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, () => (dtype === 'float32' ? rand() * 2 - 1 : Math.floor(rand() * 100)));
  return dtype === 'bool'
    ? tf.tensor(
        values.map((v) => v % 2),
        shape,
        'bool',
      )
    : tf.tensor(values, shape, dtype);
}

void test('slice, split, cast and clone give bitwise the stock kernels’ values, every rank 1-5 and dtype', () => {
  const rand = lcg(7);
  let cases = 0;
  for (let rank = 1; rank <= 5; rank++) {
    for (const dtype of ['float32', 'int32', 'bool'] as const) {
      for (let trial = 0; trial < 6; trial++) {
        const shape = Array.from({ length: rank }, () => 1 + Math.floor(rand() * 5));
        const begin = shape.map((d) => Math.floor(rand() * d));
        const size = shape.map((d, i) => (rand() < 0.2 ? -1 : 1 + Math.floor(rand() * (d - (begin[i] as number)))));
        const axis = Math.floor(rand() * rank);
        const data = randomTensor(shape, dtype, rand);
        const name = `rank ${rank} ${dtype} shape [${shape}] begin [${begin}] size [${size}] axis ${axis}`;
        const r = both(() => [
          tf.slice(data, begin, size),
          ...tf.split(
            data,
            [1, (shape[axis] as number) - 1].filter((s) => s > 0),
            axis,
          ),
          tf.cast(data, dtype),
          tf.cast(data, dtype === 'float32' ? 'int32' : 'float32'),
          tf.clone(data),
        ]);
        assert.deepEqual(r.fast, r.stock, name);
        data.dispose();
        cases++;
      }
    }
  }
  assert.equal(cases, 90);
});

void test('the attention’s split of q, k, v in three along axis 1', () => {
  const data = randomTensor([4, 3 * 8, 10, 16], 'float32', lcg(3));
  const r = both(() => tf.split(data, 3, 1));
  assert.deepEqual(r.fast, r.stock);
  data.dispose();
});

void test('shared data is reference counted: a clone outlives its source, and nothing leaks', () => {
  useWasmKernels('fast');
  const before = tf.memory();
  const source = tf.tensor([1, 2, 3, 4], [2, 2]);
  const clone = tf.clone(source);
  const same = tf.cast(source, 'float32');
  source.dispose();
  assert.deepEqual(Array.from(clone.dataSync()), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(same.dataSync()), [1, 2, 3, 4]);
  clone.dispose();
  assert.deepEqual(Array.from(same.dataSync()), [1, 2, 3, 4]);
  same.dispose();
  // A variable keeps its value through a gradient step that saves and clones its tensors.
  const initial = tf.tensor([0.5, -1.5]);
  const v = tf.variable(initial);
  const { value, grads } = tf.variableGrads(
    () => tf.sum(tf.square(tf.slice(tf.mul(v, 2), [0], [2]))) as tf.Scalar,
    [v],
  );
  assert.deepEqual(Array.from((grads[v.name] as tf.Tensor).dataSync()), [4, -12]);
  tf.dispose([value, grads, initial]);
  v.dispose();
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
});

void test('a training run is bit for bit the same with the stock kernels and the fast ones', async () => {
  const spec = buildJobSpec({
    encoding: 'rope',
    task: { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } },
    preset: 'tiny',
    seed: 3,
    steps: 4,
    batchSize: 16,
    evalSamples: 0,
  });
  const train = async (which: 'stock' | 'fast'): Promise<{ losses: number[]; weights: Float32Array[] }> => {
    useWasmKernels(which);
    try {
      const model = buildModel(spec);
      const trainer = new Trainer({ model, source: createSource(spec.task, spec.seed, 'train'), tokenizer, job: spec });
      const losses: number[] = [];
      for (let i = 0; i < 4; i++) losses.push((await trainer.trainStep()).loss);
      const weights = model.variables.map((w) => w.dataSync() as Float32Array);
      trainer.dispose();
      model.dispose();
      return { losses, weights };
    } finally {
      useWasmKernels('fast');
    }
  };
  const before = tf.memory();
  const stock = await train('stock');
  const fast = await train('fast');
  assert.equal(tf.memory().numTensors, before.numTensors, 'no tensor is left behind');
  assert.equal(tf.memory().numBytes, before.numBytes, 'no byte is left behind');
  assert.deepEqual(fast.losses, stock.losses);
  assert.equal(fast.weights.length, stock.weights.length);
  fast.weights.forEach((w, i) => assert.deepEqual(w, stock.weights[i], `weight ${i}`));
});
