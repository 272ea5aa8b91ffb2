// Batching and loss masking, the NaN guard, and the workload's contract (step limit, checkpoint checks, evaluation).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { toWireError } from '../../protocol/errors.ts';
import { BOS, EOS, PAD, tokenizer } from '../../src/data/tokenizer.ts';
import type { Example, ExampleSource, SourceState } from '../../src/data/types.ts';
import { makeBatch } from '../../src/train/batches.ts';
import { CheckpointError, NonFiniteLossError, TrainConfigError } from '../../src/train/errors.ts';
import { buildJobSpec } from '../../src/train/job.ts';
import { createWorkload, loadModel } from '../../src/train/tf-workload.ts';
import { answerTokenAccuracy, readTrainingCheckpoint, Trainer, type TrainableModel } from '../../src/train/trainer.ts';
import { tinyJob } from './fixtures/tiny-job.ts';

before(async () => {
  await tf.setBackend('cpu');
});

const example = (prompt: string, target: string): Example => ({
  id: prompt,
  task: 'addition',
  prompt,
  target,
  answer: target,
  length: 1,
});

void test('makeBatch: BOS + prompt + target + EOS, padded, loss weights only on target and EOS', () => {
  const V = tokenizer.vocabSize;
  const batch = makeBatch([example('1+2=', '3'), example('10+20=', '30')], tokenizer, 16);
  // Longest sequence: BOS 1 0 + 2 0 = 3 0 EOS -> 10 tokens, input length 9.
  assert.equal(batch.length, 9);
  assert.equal(batch.batchSize, 2);
  const row0 = Array.from(batch.ids.subarray(0, 9));
  assert.deepEqual(row0, [BOS, ...tokenizer.encode('1+2=3'), PAD, PAD, PAD]);
  assert.equal(batch.targetTokens, 2 + 3, 'target chars plus EOS, per row');
  assert.equal(batch.tokens, 6 + 9);
  const weightAt = (b: number, t: number): { id: number; w: number }[] => {
    const out: { id: number; w: number }[] = [];
    for (let v = 0; v < V; v++) {
      const w = batch.weights[(b * 9 + t) * V + v] as number;
      if (w !== 0) out.push({ id: v, w });
    }
    return out;
  };
  // Row 0: input positions 0..3 (BOS 1 + 2) predict prompt chars: no loss. Position 4 ('=') predicts '3'; 5 predicts EOS.
  for (let t = 0; t < 4; t++) assert.deepEqual(weightAt(0, t), [], `row 0 position ${t}`);
  assert.deepEqual(weightAt(0, 4), [{ id: tokenizer.encode('3')[0] as number, w: Math.fround(1 / 5) }]);
  assert.deepEqual(weightAt(0, 5), [{ id: EOS, w: Math.fround(1 / 5) }]);
  for (let t = 6; t < 9; t++) assert.deepEqual(weightAt(0, t), [], `padding ${t}`);
  assert.deepEqual(weightAt(1, 6), [{ id: tokenizer.encode('3')[0] as number, w: Math.fround(1 / 5) }]);
  assert.deepEqual(weightAt(1, 8), [{ id: EOS, w: Math.fround(1 / 5) }]);
  const total = batch.weights.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(total - 1) < 1e-6, 'weights sum to 1 (a mean over target tokens)');
  assert.throws(
    () => makeBatch([example('123456789+1=', '123456790')], tokenizer, 8),
    (e: unknown) => e instanceof TrainConfigError && /maxLen is 8/.test(e.message),
  );
});

class FixedSource implements ExampleSource {
  readonly task = 'addition';
  private position = 0;
  next(): Example {
    this.position++;
    return example('1+1=', '2');
  }
  getState(): SourceState {
    return { rng: [1, 2, 3, 4], position: this.position };
  }
  setState(state: SourceState): void {
    this.position = state.position;
  }
}

void test('a NaN loss stops training with a non-retryable NonFiniteLossError', async () => {
  const scale = tf.variable(tf.scalar(1), true);
  const model: TrainableModel = {
    variables: [scale],
    forward: (ids) => ({
      logits: tf.mul(tf.ones([ids.shape[0], ids.shape[1], tokenizer.vocabSize]), scale) as tf.Tensor3D,
    }),
    parameterCount: () => 1,
    dispose: () => scale.dispose(),
  };
  const job = tinyJob('nope', 10);
  const trainer = new Trainer({ model, source: new FixedSource(), tokenizer, job });
  const ok = await trainer.trainStep();
  assert.ok(Number.isFinite(ok.loss), 'a finite loss passes');
  scale.assign(tf.scalar(NaN));
  await assert.rejects(trainer.trainStep(), (e: unknown) => {
    assert.ok(e instanceof NonFiniteLossError);
    assert.equal(e.retryable, false);
    assert.equal(e.step, 2);
    assert.equal(toWireError(e).retryable, false, 'it crosses the wire as non-retryable');
    return true;
  });
  trainer.dispose();
  model.dispose();
});

void test(
  'workload: stops at the job total, refuses corrupt or foreign checkpoints, evaluates',
  { timeout: 60_000 },
  async () => {
    const job = tinyJob('alibi', 3);
    const tensorsBefore = tf.memory().numTensors;
    const w = await createWorkload(job, { backend: 'cpu' });
    try {
      assert.equal(w.backend, 'cpu');
      assert.ok(w.parameterCount > 0);
      const points = await w.trainSteps(10);
      assert.deepEqual(
        points.map((p) => p.step),
        [1, 2, 3],
        'never past spec.training.steps',
      );
      assert.deepEqual(await w.trainSteps(5), []);
      for (const p of points) {
        assert.ok(p.learningRate > 0 && Number.isFinite(p.gradNorm) && p.tokensPerSecond > 0 && p.time > 0);
      }
      const blob = await w.checkpoint();
      const bad = blob.slice();
      bad[bad.length - 100] = (bad[bad.length - 100] as number) ^ 0xff;
      await assert.rejects(createWorkload(job, { backend: 'cpu', resumeFrom: bad }), CheckpointError);
      await assert.rejects(
        createWorkload(job, { backend: 'cpu', resumeFrom: blob.subarray(0, 1000) }),
        CheckpointError,
      );
      await assert.rejects(
        createWorkload(tinyJob('rope', 3), { backend: 'cpu', resumeFrom: blob }),
        /encoding alibi in the checkpoint/,
      );
      const capped = tinyJob('alibi', 3);
      await assert.rejects(
        createWorkload(
          { ...capped, model: { ...capped.model, attentionLogitCap: 2 } },
          { backend: 'cpu', resumeFrom: blob },
        ),
        /model\.attentionLogitCap is 0 in the checkpoint, 2 in the job/,
      );
      // The stride matters to sinusoidal alone: an alibi checkpoint resumes under any stride, a sinusoidal one only
      // under its own.
      const strided = await createWorkload(
        { ...capped, model: { ...capped.model, sinusoidalStride: 2 } },
        { backend: 'cpu', resumeFrom: blob },
      );
      assert.equal(strided.step, 3);
      strided.dispose();
      const sinusoidal = tinyJob('sinusoidal', 3);
      const unstrided = await createWorkload(sinusoidal, { backend: 'cpu' });
      const sinusoidalBlob = await unstrided.checkpoint();
      unstrided.dispose();
      await assert.rejects(
        createWorkload(
          { ...sinusoidal, model: { ...sinusoidal.model, sinusoidalStride: 2 } },
          { backend: 'cpu', resumeFrom: sinusoidalBlob },
        ),
        /model\.sinusoidalStride is 1 in the checkpoint, 2 in the job/,
      );
      const resumed = await createWorkload(job, { backend: 'cpu', resumeFrom: blob });
      assert.equal(resumed.step, 3);
      resumed.dispose();
      // A final model loads back for serving: same job, same weights.
      const loaded = loadModel(blob);
      assert.equal(loaded.step, 3);
      assert.equal(loaded.job.encoding, 'alibi');
      const saved = readTrainingCheckpoint(blob).tensors;
      loaded.model.variables.forEach((v, i) => assert.deepEqual(v.dataSync(), saved.get(`param/${i}`)?.data, v.name));
      loaded.model.dispose();
      const evaluation = await w.evaluate();
      assert.equal(evaluation.steps, 3);
      assert.equal(evaluation.encoding, 'alibi');
      assert.equal(evaluation.backend, 'cpu');
      assert.equal(evaluation.problems.length, 8);
      assert.ok(evaluation.problems.every((p) => p.split === 'test'));
      assert.ok(evaluation.exactMatch >= 0 && evaluation.exactMatch <= 1);
      assert.equal(evaluation.attentionEntropy.length, job.model.layers);
      assert.equal(evaluation.attentionEntropy[0]?.length, job.model.heads);
      assert.ok(evaluation.attentionEntropy.flat().every((h) => Number.isFinite(h) && h >= 0));
      assert.equal(
        Object.values(evaluation.perLength).reduce((a, b) => a + b.n, 0),
        8,
      );
    } finally {
      w.dispose();
    }
    assert.equal(tf.memory().numTensors, tensorsBefore, 'dispose frees every tensor (weights, moments, caches)');
  },
);

void test('a bad job spec is a TrainConfigError naming the field', async () => {
  assert.throws(
    () => buildJobSpec({ encoding: 'rope', task: { name: 'addition', params: {} }, steps: 0 }),
    /job\.training\.steps/,
  );
  assert.throws(
    () => buildJobSpec({ encoding: 'rope', task: { name: 'addition', params: {} }, preset: 'huge' }),
    /unknown preset "huge"/,
  );
  const model = { ...tinyJob().model, attentionLogitCap: -1 };
  assert.throws(
    () => buildJobSpec({ encoding: 'rope', task: { name: 'addition', params: {} }, model }),
    /job\.model\.attentionLogitCap: must be a number >= 0, 0 for none \(got -1\)/,
  );
  assert.throws(
    () =>
      buildJobSpec({
        encoding: 'sinusoidal',
        task: { name: 'addition', params: {} },
        model: { ...tinyJob().model, sinusoidalStride: -2 },
      }),
    /job\.model\.sinusoidalStride: must be a number > 0, 1 for the paper's table \(got -2\)/,
  );
  const job = { ...tinyJob(), training: { ...tinyJob().training, batchSize: -1 } };
  await assert.rejects(
    createWorkload(job, { backend: 'cpu' }),
    (e: unknown) => e instanceof TrainConfigError && /batchSize/.test(e.message) && !e.retryable,
  );
});

void test('answerTokenAccuracy counts only weighted (answer) positions, and each step reports it', async () => {
  // Two positions with weight (targets 1 and 2), one padding position (no weight) that the model gets "wrong".
  const weights = tf.tensor3d([
    [
      [0, 0.5, 0],
      [0, 0, 0.5],
      [0, 0, 0],
    ],
  ]);
  const rightAtBoth = tf.tensor3d([
    [
      [0, 9, 0],
      [0, 0, 9],
      [9, 0, 0],
    ],
  ]);
  const rightAtOne = tf.tensor3d([
    [
      [0, 9, 0],
      [9, 0, 0],
      [0, 9, 0],
    ],
  ]);
  assert.equal(answerTokenAccuracy(rightAtBoth, weights).arraySync(), 1);
  assert.equal(answerTokenAccuracy(rightAtOne, weights).arraySync(), 0.5);
  tf.dispose([weights, rightAtBoth, rightAtOne]);

  const workload = await createWorkload(tinyJob('rope', 3), { backend: 'cpu' });
  try {
    await workload.trainSteps(1); // the first step builds optimizer moments and cached masks
    const before = tf.memory().numTensors;
    const points = await workload.trainSteps(2);
    assert.equal(points.length, 2);
    for (const p of points) {
      assert.ok(p.accuracy !== undefined && p.accuracy >= 0 && p.accuracy <= 1, `accuracy ${p.accuracy}`);
    }
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked by the accuracy read-back');
  } finally {
    workload.dispose();
  }
});

void test(
  'workload: a mape checkpoint resumes under the same options only (absent means on)',
  { timeout: 60_000 },
  async () => {
    const job = tinyJob('mape', 2);
    assert.equal(job.model.mapeRelative, true, 'a MAPE job gets its relative bias by default, written into its spec');
    const w = await createWorkload(job, { backend: 'cpu' });
    try {
      await w.trainSteps(2);
      const blob = await w.checkpoint();
      const explicit = await createWorkload(
        { ...job, model: { ...job.model, mapeOffset: true, mapeRoles: true, mapeMaxOffset: 20, mapeRelative: true } },
        { backend: 'cpu', resumeFrom: blob },
      );
      assert.equal(explicit.step, 2);
      explicit.dispose();
      for (const [patch, pattern] of [
        [{ mapeOffset: false }, /model\.mapeMaxOffset is 20 in the checkpoint, 0 in the job/],
        [{ mapeMaxOffset: 5 }, /model\.mapeMaxOffset is 20 in the checkpoint, 5 in the job/],
        [{ mapeRoles: false }, /model\.mapeRoles is true in the checkpoint, false in the job/],
        [{ mapeRelative: false }, /model\.mapeRelative is true in the checkpoint, false in the job/],
      ] as const) {
        await assert.rejects(
          createWorkload({ ...job, model: { ...job.model, ...patch } }, { backend: 'cpu', resumeFrom: blob }),
          pattern,
        );
      }
    } finally {
      w.dispose();
    }
  },
);
