// Data-parallel training numerics (src/train/data-parallel.ts) on the wasm backend, tiny preset, dropout 0, with the
// ranks of one gang in this process over the in-memory communicator: bitwise equal to a single-process reference that
// sums the shards in ring order, close to the single-agent run, replicas checked by hash, checkpoints interchangeable.
import { before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { JobSpec } from '../../protocol/messages.ts';
import { createSource } from '../../src/data/tasks.ts';
import { tokenizer } from '../../src/data/tokenizer.ts';
import { selectBackend } from '../../src/train/backend.ts';
import { makeBatch } from '../../src/train/batches.ts';
import type { DataParallelTrainer } from '../../src/train/data-parallel.ts';
import { allreduceReducer, createReplica } from '../../src/train/data-parallel-setup.ts';
import { GangInterruptedError, GradientExchangeError, ReplicaDivergenceError } from '../../src/train/errors.ts';
import { buildJobSpec } from '../../src/train/job.ts';
import { makeShardBatch, shardRows } from '../../src/train/shard-batch.ts';
import { buildModel } from '../../src/train/tf-workload.ts';
import { readTrainingCheckpoint, Trainer } from '../../src/train/trainer.ts';
import { memoryRanks } from '../protocol/fixtures/memory-ranks.ts';
import { rankOrderSum, referenceRun, ringSum } from './fixtures/ring-reference.ts';

/**
 * 2-rank vs single-agent over the test's 120 steps: the largest relative loss difference allowed. The two add the
 * same float32 terms in different orders (two half-batch sums against one whole-batch sum), so a step's gradient
 * differs in its last bits, and training amplifies that like any other last-bit nudge (the one-ulp control in the
 * test grows the same way; both reach percent-level differences in longer runs of this preset). So the bound holds
 * for a horizon, not for ever; it leaves wide headroom over what the test prints while a summation bug (a shard
 * counted twice, a wrong normalizer) is off by far more from the first step.
 */
const LOSS_TOLERANCE = 1e-4;

before(async () => {
  await selectBackend('wasm');
});

function job(batchSize: number, steps: number, seed = 11): JobSpec {
  return buildJobSpec({
    encoding: 'rope',
    task: { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } },
    preset: 'tiny',
    seed,
    steps,
    batchSize,
    learningRate: 1e-3,
    evalSamples: 0,
  });
}

function singleTrainer(spec: JobSpec): Trainer {
  return new Trainer({
    model: buildModel(spec),
    source: createSource(spec.task, spec.seed, 'train'),
    tokenizer,
    job: spec,
  });
}

function disposeAfter(t: TestContext, trainers: readonly Trainer[]): void {
  t.after(() => {
    for (const trainer of trainers) {
      trainer.dispose();
      trainer.model.dispose();
    }
  });
}

/** `ranks` replicas of `spec` joined over the in-memory communicator, each summing through its ring allreduce. */
async function gang(
  t: TestContext,
  spec: JobSpec,
  ranks: number,
  options: { hashEvery?: number; resumeFrom?: Uint8Array } = {},
): Promise<DataParallelTrainer[]> {
  const { comms } = await memoryRanks(t, ranks, { timeoutMs: 120_000, chunkBytes: 1 << 20 });
  const replicas = comms.map((comm, rank) =>
    createReplica(spec, {
      membership: { rank, ranks, reduce: allreduceReducer(comm) },
      hashEvery: options.hashEvery ?? 0,
      ...(options.resumeFrom === undefined ? {} : { resumeFrom: options.resumeFrom }),
    }),
  );
  disposeAfter(t, replicas);
  return replicas;
}

/** n steps on every replica at once; each rank's points. */
function trainAll(replicas: readonly Trainer[], n: number): Promise<{ loss: number; gradNorm: number }[][]> {
  return Promise.all(replicas.map((r) => r.trainSteps(n)));
}

async function weightsOf(trainer: Trainer): Promise<Float32Array[]> {
  return Promise.all(trainer.model.variables.map(async (v) => new Float32Array(await v.data())));
}

function sameBits(a: readonly Float32Array[], b: readonly Float32Array[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i] as Float32Array;
    return (
      x.length === y.length &&
      Buffer.compare(
        Buffer.from(x.buffer, x.byteOffset, x.byteLength),
        Buffer.from(y.buffer, y.byteOffset, y.byteLength),
      ) === 0
    );
  });
}

/** Moves one weight of a hidden layer (one the loss depends on) by one unit in the last place. */
async function nudgeOneUlp(trainer: Trainer): Promise<void> {
  const v = trainer.model.variables[4]!;
  const values = new Float32Array(await v.data());
  const bits = new Uint32Array(values.buffer);
  bits[5] = bits[5]! + 1;
  tf.tidy(() => v.assign(tf.tensor(values, v.shape, 'float32')));
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

void test('shards are contiguous, as even as can be, and equal the rows of the whole batch bit for bit', () => {
  const source = createSource({ name: 'addition', params: { minDigits: 1, maxDigits: 4, reverse: true } }, 5, 'train');
  const examples = Array.from({ length: 10 }, () => source.next());
  const whole = makeBatch(examples, tokenizer, 64);
  const V = tokenizer.vocabSize;
  for (const ranks of [1, 2, 3, 4, 10]) {
    let next = 0;
    let targets = 0;
    for (let rank = 0; rank < ranks; rank++) {
      const rows = shardRows(10, ranks, rank);
      assert.equal(rows.start, next, `${ranks} ranks: rank ${rank} starts where rank ${rank - 1} ended`);
      const size = rows.end - rows.start;
      assert.ok(size === Math.floor(10 / ranks) || size === Math.ceil(10 / ranks), `${ranks} ranks: even shares`);
      next = rows.end;
      const shard = makeShardBatch(examples, tokenizer, 64, rows);
      const L = whole.length;
      assert.equal(shard.length, L, 'padded to the global length');
      assert.deepEqual(shard.ids, whole.ids.slice(rows.start * L, rows.end * L));
      assert.deepEqual(shard.weights, whole.weights.slice(rows.start * L * V, rows.end * L * V));
      assert.equal(shard.globalTargetTokens, whole.targetTokens);
      assert.equal(shard.globalTokens, whole.tokens);
      targets += shard.targetTokens;
    }
    assert.equal(next, 10, `${ranks} ranks cover the batch`);
    assert.equal(targets, whole.targetTokens);
  }
  assert.deepEqual(shardRows(2, 3, 0), { start: 0, end: 0 }, 'more ranks than rows: an empty shard');
  assert.throws(() => shardRows(10, 2, 2), /rank 2 of 2/);
});

void test('one rank with an identity reducer is the single-agent trainer, bit for bit', async (t) => {
  const spec = job(8, 20);
  const single = singleTrainer(spec);
  const solo = createReplica(spec, { membership: { rank: 0, ranks: 1, reduce: async (x) => x }, hashEvery: 2 });
  disposeAfter(t, [single, solo]);
  const a = await single.trainSteps(4);
  const b = await solo.trainSteps(4);
  assert.deepEqual(
    b.map((p) => [p.step, p.loss, p.gradNorm]),
    a.map((p) => [p.step, p.loss, p.gradNorm]),
  );
  assert.ok(sameBits(await weightsOf(solo), await weightsOf(single)), 'same weights');
  assert.equal(solo.tokensProcessed, single.tokensProcessed, 'tokens counted over the global batch');
});

for (const ranks of [2, 3]) {
  void test(`${ranks} ranks over the communicator equal the ring-order reference bit for bit`, async (t) => {
    // 10 rows: 5+5 on two ranks, 3+3+4 on three (uneven shards).
    const spec = job(10, 20);
    const steps = 3;
    const replicas = await gang(t, spec, ranks);
    const points = await trainAll(replicas, steps);
    const reference = await referenceRun(spec, ranks, steps);
    for (const [rank, replica] of replicas.entries()) {
      assert.deepEqual(
        points[rank]?.map((p) => p.loss),
        reference.losses,
        `rank ${rank}: losses`,
      );
      assert.ok(sameBits(await weightsOf(replica), reference.weights), `rank ${rank}: weights after ${steps} steps`);
    }
    if (ranks === 3) {
      // The order matters: summing rank 0 + 1 + 2 everywhere gives other bits, so the test can tell the two apart.
      const naive = await referenceRun(spec, ranks, steps, rankOrderSum);
      assert.ok(!sameBits(naive.weights, reference.weights), 'rank-order sums differ from ring-order sums');
    }
  });
}

void test('ringSum adds segment k from rank k round the ring', () => {
  // Three ranks, three floats: one per segment. 1 + 2^-24 rounds back to 1, so the association shows.
  const e = 2 ** -24;
  const parts = [new Float32Array([1, e, e]), new Float32Array([e, 1, e]), new Float32Array([e, e, 1])];
  // Segment 0: (1 + e) + e = 1; segment 1: (1 + e) + e = 1; segment 2: (1 + e) + e = 1 (each starts at the big one).
  assert.deepEqual(Array.from(ringSum(parts)), [1, 1, 1]);
  // Rank order: segment 2 is (e + e) + 1 = 1 + 2^-23.
  assert.deepEqual(Array.from(rankOrderSum(parts)), [1, 1, 1 + 2 ** -23]);
});

void test(
  `2 ranks track the single-agent run within a relative loss difference of ${LOSS_TOLERANCE}`,
  { timeout: 600_000 },
  async (t) => {
    const steps = Number(process.env['PE_ARENA_DP_STEPS'] ?? 120);
    const spec = job(16, steps);
    const single = singleTrainer(spec);
    // The control: the single-agent run with one weight one ulp off, to show how far training itself amplifies a
    // last-bit difference over the same steps.
    const nudged = singleTrainer(spec);
    disposeAfter(t, [single, nudged]);
    await nudgeOneUlp(nudged);
    const replicas = await gang(t, spec, 2, { hashEvery: 40 });
    const one = await single.trainSteps(steps);
    const control = await nudged.trainSteps(steps);
    const two = await trainAll(replicas, steps);
    assert.equal(one.length, steps);
    const maxRelative = (points: readonly { loss: number }[]): number =>
      Math.max(...points.map((p, i) => Math.abs(p.loss - one[i]!.loss) / Math.abs(one[i]!.loss)));
    const gangDiff = maxRelative(two[0]!);
    const controlDiff = maxRelative(control);
    assert.deepEqual(
      two[1]?.map((p) => p.loss),
      two[0]?.map((p) => p.loss),
      'both ranks report the same losses',
    );
    t.diagnostic(
      `max relative loss difference over ${steps} steps: 2 ranks ${gangDiff.toExponential(3)}, ` +
        `one-ulp control ${controlDiff.toExponential(3)} (tolerance ${LOSS_TOLERANCE})`,
    );
    assert.ok(gangDiff < LOSS_TOLERANCE, `max relative loss difference ${gangDiff}`);
    assert.ok(one.at(-1)!.loss < one[0]!.loss * 0.9, 'the run learns (so the comparison spans a moving loss)');
    assert.ok(gangDiff > 0, 'the orders differ, so the two runs are not the same computation');
  },
);

void test('replica hashes agree every K steps; a perturbed replica fails both ranks loudly', async (t) => {
  const spec = job(8, 20);
  const replicas = await gang(t, spec, 2, { hashEvery: 2 });
  await trainAll(replicas, 4);
  const [h0, h1] = await Promise.all(replicas.map((r) => r.stateHash()));
  assert.equal(hex(h0!), hex(h1!), 'equal state after 4 steps (the check after step 2 ran inside)');
  // One weight of rank 1 moves: the summed gradient is still the same on both ranks, the weights no longer are.
  const v = replicas[1]!.model.variables[0]!;
  const values = new Float32Array(await v.data());
  values[0] = values[0]! + 1e-3;
  tf.tidy(() => v.assign(tf.tensor(values, v.shape, 'float32')));
  // The state after step 4 is compared before step 5 draws anything: the perturbation shows there.
  const results = await Promise.allSettled(replicas.map((r) => r.trainSteps(2)));
  for (const [rank, result] of results.entries()) {
    assert.equal(result.status, 'rejected', `rank ${rank} fails`);
    const error = (result as PromiseRejectedResult).reason as unknown;
    assert.ok(error instanceof ReplicaDivergenceError, `rank ${rank}: ${String(error)}`);
    assert.equal(error.retryable, false);
    assert.equal(error.step, 4);
    assert.match(error.message, /diverged at step 4 .*ranks 1 differ from rank 0/);
  }
});

void test('a reducer that returns the wrong length is a GradientExchangeError naming the rank and step', async (t) => {
  const spec = job(8, 20);
  const replica = createReplica(spec, {
    membership: { rank: 0, ranks: 2, reduce: async (x) => x.subarray(1) },
    hashEvery: 0,
  });
  disposeAfter(t, [replica]);
  await assert.rejects(
    replica.trainStep(),
    (e: unknown) => e instanceof GradientExchangeError && e.retryable && /rank 0 of 2: .* at step 0/.test(e.message),
  );
});

void test('a gang step leaves no tensor behind: one rank, two ranks, and a step undone', async (t) => {
  const spec = job(8, 20);
  let fail = false;
  const reduce = async (x: Float32Array): Promise<Float32Array> => {
    if (fail) throw new Error('peer gone');
    return x;
  };
  // A gang of one keeps its gradients on the device; a rank of two sends them through the flat buffer.
  const solo = createReplica(spec, { membership: { rank: 0, ranks: 1, reduce }, hashEvery: 0 });
  const half = createReplica(spec, { membership: { rank: 1, ranks: 2, reduce }, hashEvery: 0 });
  disposeAfter(t, [solo, half]);
  const attempt = async (replica: DataParallelTrainer, failing: boolean): Promise<number> => {
    fail = failing;
    if (failing) await assert.rejects(replica.trainStep(), GangInterruptedError);
    else await replica.trainStep();
    fail = false;
    return tf.memory().numTensors;
  };
  for (const replica of [solo, half]) {
    const name = `rank ${replica.membership.rank} of ${replica.membership.ranks}`;
    await attempt(replica, false);
    // The first try of a step may fill the model's caches (RoPE tables per sequence length); a retry of the same
    // step has the same shapes, so whatever it adds is a leak.
    const tried = await attempt(replica, true);
    assert.equal(await attempt(replica, true), tried, `${name}: a step undone leaves no tensor behind`);
    assert.equal(await attempt(replica, false), tried, `${name}: a step applied leaves no tensor behind`);
    assert.equal(replica.step, 2);
  }
});

void test('a gang that breaks mid-step undoes the step: the retried step is the one a clean run takes', async (t) => {
  const spec = job(8, 20);
  const solo = (reduce: (x: Float32Array) => Promise<Float32Array>): DataParallelTrainer =>
    createReplica(spec, { membership: { rank: 0, ranks: 1, reduce }, hashEvery: 0 });
  const clean = solo(async (x) => x);
  let calls = 0;
  const broken = solo(async (x) => {
    if (++calls === 2) throw new Error('peer gone');
    return x;
  });
  disposeAfter(t, [clean, broken]);
  await clean.trainSteps(2);
  await broken.trainSteps(1);
  const position = async (): Promise<unknown> => readTrainingCheckpoint(await broken.checkpoint()).meta.source;
  const before = await position();
  await assert.rejects(
    broken.trainStep(),
    (e: unknown) => e instanceof GangInterruptedError && e.retryable && /step 2 failed: peer gone/.test(e.message),
  );
  assert.equal(broken.step, 1, 'the step was not applied');
  assert.deepEqual(await position(), before, 'the data position is back where it was');
  await broken.trainStep();
  assert.ok(sameBits(await weightsOf(broken), await weightsOf(clean)), 'the retried step equals the clean one');
});

void test('checkpoints are ordinary: a gang checkpoint resumes on one rank, a single-agent one on two', async (t) => {
  const spec = job(8, 20);
  // Gang of two, 3 steps, checkpoint; it goes on for a 4th step.
  const replicas = await gang(t, spec, 2, { hashEvery: 1 });
  await trainAll(replicas, 3);
  const [c0, c1] = await Promise.all(replicas.map((r) => r.checkpoint()));
  const meta = readTrainingCheckpoint(c0!).meta;
  assert.equal(meta.step, 3);
  assert.deepEqual(readTrainingCheckpoint(c1!).meta.source, meta.source, 'both ranks at the same data position');
  const gangNext = (await trainAll(replicas, 1))[0]![0]!;
  // One agent, resumed from the gang's checkpoint: the same next batch and weights, so the same loss up to order.
  const single = singleTrainer(spec);
  disposeAfter(t, [single]);
  single.restore(c0!);
  const singleNext = await single.trainStep();
  assert.equal(singleNext.step, 4);
  assert.ok(Math.abs(singleNext.loss - gangNext.loss) / gangNext.loss < 1e-5, `${singleNext.loss} vs ${gangNext.loss}`);
  // A gang resumed from its own checkpoint continues exactly.
  const again = await gang(t, spec, 2, { hashEvery: 1, resumeFrom: c0! });
  const againNext = await trainAll(again, 1);
  assert.equal(againNext[0]![0]!.loss, gangNext.loss, 'exact resume on the same gang size');
  assert.ok(sameBits(await weightsOf(again[1]!), await weightsOf(replicas[1]!)));
  // A single-agent checkpoint, resumed on two ranks.
  const alone = singleTrainer(spec);
  disposeAfter(t, [alone]);
  await alone.trainSteps(3);
  const solo = await alone.checkpoint();
  const aloneNext = await alone.trainStep();
  const pair = await gang(t, spec, 2, { hashEvery: 1, resumeFrom: solo });
  const pairNext = await trainAll(pair, 1);
  assert.equal(pairNext[0]![0]!.loss, pairNext[1]![0]!.loss);
  assert.ok(
    Math.abs(pairNext[0]![0]!.loss - aloneNext.loss) / aloneNext.loss < 1e-5,
    `${pairNext[0]![0]!.loss} vs ${aloneNext.loss}`,
  );
  assert.equal(pair[0]!.step, 4);
});

void test('a replica re-sharded onto a gang of one goes on exactly as a single agent from the same state', async (t) => {
  const spec = job(8, 20);
  const replicas = await gang(t, spec, 2, { hashEvery: 1 });
  await trainAll(replicas, 2);
  const state = await replicas[1]!.checkpoint();
  // Rank 1 survives alone: rank 0 of 1, summing with nobody, from the next step on.
  const survivor = replicas[1]!;
  survivor.setMembership({ rank: 0, ranks: 1, reduce: async (x) => x });
  const [next] = await survivor.trainSteps(1);
  const single = singleTrainer(spec);
  disposeAfter(t, [single]);
  single.restore(state);
  const singleNext = await single.trainStep();
  assert.equal(next?.step, 3);
  assert.equal(next?.loss, singleNext.loss);
  assert.equal(next?.gradNorm, singleNext.gradNorm);
  assert.ok(sameBits(await weightsOf(survivor), await weightsOf(single)), 'same weights after the step');
  assert.throws(
    () => survivor.setMembership({ rank: 1, ranks: 1, reduce: async (x) => x }),
    /rank 1 of 1 is not a valid rank/,
  );
});
