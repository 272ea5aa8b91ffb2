// One data-parallel training step, the numerics only: whoever drives it (the agent) supplies the reducer, which sums a
// flat Float32Array over the gang's ranks and returns the same sum on every rank (the communicator's ring allreduce).
// Each rank draws the same global batch, trains on its contiguous shard with the loss divided by the GLOBAL count of
// answer tokens, and contributes one flat buffer: every gradient, then the step's totals. The summed gradient is
// the single-agent gradient up to float32 summation order; every rank clips it on its global norm and applies the
// same AdamW update, so replicas stay bitwise identical, which a state hash compared every `hashEvery` steps checks.
// Checkpoints and restores are the Trainer's own: a data-parallel checkpoint is an ordinary one.
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { MetricPoint } from '../../protocol/messages.ts';
import {
  GangInterruptedError,
  GradientExchangeError,
  NonFiniteLossError,
  ReplicaDivergenceError,
  TrainConfigError,
} from './errors.ts';
import { learningRateAt } from './schedule.ts';
import { makeShardBatch, shardRows, type ShardBatch } from './shard-batch.ts';
import { dropoutSeed, maskedCrossEntropy, Trainer, type TrainerOptions } from './trainer.ts';
import type { StepTiming } from './workload.ts';

/** Sums a flat buffer over every rank of the gang; all ranks call it in the same order and get the same sum. */
export type Reducer = (flat: Float32Array) => Promise<Float32Array>;

/** Where this replica stands in its gang; replaced at a step boundary when the gang reforms. */
export interface Membership {
  rank: number;
  ranks: number;
  reduce: Reducer;
}

export interface DataParallelOptions extends TrainerOptions {
  membership: Membership;
  /** Compare the replicas' state hashes after every this many steps (0: never). */
  hashEvery?: number;
}

export const DEFAULT_HASH_EVERY = 50;

const emptyTiming = (): StepTiming => ({ steps: 0, computeMs: 0, reduceMs: 0, applyMs: 0 });

/** The totals that follow the gradients in the flat buffer, in this order. */
export const STEP_TOTALS = ['lossSum', 'rightTokens', 'answerTokens'] as const;

/** Bytes of the state hash; the hash exchange gives each rank this many floats, one byte each. */
export const HASH_BYTES = 32;

/** Where each variable's gradient lies in the flat buffer (row-major, in `variables` order), then the totals. */
export interface FlatLayout {
  offsets: number[];
  sizes: number[];
  shapes: number[][];
  /** Floats of all gradients; the totals start here. */
  gradients: number;
  length: number;
}

export function flatLayout(variables: readonly tf.Variable[]): FlatLayout {
  const offsets: number[] = [];
  const sizes: number[] = [];
  let at = 0;
  for (const v of variables) {
    offsets.push(at);
    sizes.push(v.size);
    at += v.size;
  }
  return { offsets, sizes, shapes: variables.map((v) => v.shape), gradients: at, length: at + STEP_TOTALS.length };
}

/** Answer tokens predicted right and answer tokens in all, as device scalars (teacher-forced, as the live acc). */
export function answerTokenCounts(logits: tf.Tensor3D, weights: tf.Tensor3D): [tf.Scalar, tf.Scalar] {
  return tf.tidy(() => {
    const mask = tf.cast(tf.greater(tf.sum(weights, -1), 0), 'float32');
    const right = tf.cast(tf.equal(tf.argMax(logits, -1), tf.argMax(weights, -1)), 'float32');
    return [tf.sum(tf.mul(right, mask)) as tf.Scalar, tf.sum(mask) as tf.Scalar];
  });
}

/**
 * The dropout seed of a rank's shard: rank 0 keeps the single-agent seed. With dropout on, masks are drawn per shard,
 * so only dropout-0 runs are independent of the rank count; every replay of the same gang is still exact.
 */
export function shardDropoutSeed(seed: number, step: number, rank: number): number {
  const base = dropoutSeed(seed, step);
  return rank === 0 ? base : dropoutSeed(base, rank);
}

/** A tensor's values in an array of the caller's own (some backends hand out their storage; reducers sum in place). */
async function readFloats(t: tf.Tensor): Promise<Float32Array> {
  return new Float32Array(await t.data());
}

function checkMembership(m: Membership): Membership {
  if (!Number.isInteger(m.ranks) || m.ranks < 1 || !Number.isInteger(m.rank) || m.rank < 0 || m.rank >= m.ranks)
    throw new TrainConfigError(`data-parallel membership: rank ${m.rank} of ${m.ranks} is not a valid rank`);
  if (typeof m.reduce !== 'function') throw new TrainConfigError('data-parallel membership: reduce is not a function');
  return { ...m };
}

export class DataParallelTrainer extends Trainer {
  readonly layout: FlatLayout;
  readonly hashEvery: number;
  private current: Membership;
  /** The step whose replica hashes were last compared (the check runs at the start of the step after). */
  private checkedAt = 0;
  /** Where the applied steps' time went since the last takeTiming(). */
  private timing: StepTiming = emptyTiming();

  constructor(options: DataParallelOptions) {
    super(options);
    this.current = checkMembership(options.membership);
    const every = options.hashEvery ?? DEFAULT_HASH_EVERY;
    if (!Number.isInteger(every) || every < 0)
      throw new TrainConfigError(`hashEvery must be a non-negative integer (got ${every})`);
    this.hashEvery = every;
    this.layout = flatLayout(this.model.variables);
  }

  /** Where the steps applied since the last call spent their time (ms in all); counting starts afresh. */
  takeTiming(): StepTiming {
    const taken = this.timing;
    this.timing = emptyTiming();
    return taken;
  }

  get membership(): Readonly<Membership> {
    return this.current;
  }

  /** A new gang (after a loss or a growth), from the next step on; the rows are re-sharded among `ranks`. */
  setMembership(membership: Membership): void {
    this.current = checkMembership(membership);
    // Every rank of the new gang starts from the same state, so the next hash check is due a whole period on,
    // on every rank alike (a newcomer's counter must not call a check its peers skip).
    this.checkedAt = this.stepsDone;
  }

  /**
   * One optimizer step of the gang; throws NonFiniteLossError on every rank alike when the global loss is not finite.
   * When the reducer fails (the gang broke or reforms), the step is undone before anything changed but the data
   * position, which is put back: the replica then stands exactly after its last applied step.
   */
  override async trainStep(): Promise<MetricPoint> {
    // Due after the last step: checked here, before drawing anything, so an interrupted check has nothing to undo.
    if (this.hashEvery > 0 && this.stepsDone > this.checkedAt && this.stepsDone % this.hashEvery === 0) {
      await this.checkReplicas();
      this.checkedAt = this.stepsDone;
    }
    const started = performance.now();
    const step = this.stepsDone;
    const { rank, ranks, reduce } = this.current;
    const { batchSize } = this.job.training;
    const position = this.source.getState();
    // The whole global batch is drawn on every rank, so every replica's data position moves alike.
    const examples = Array.from({ length: batchSize }, () => this.source.next());
    const shard = makeShardBatch(examples, this.tokenizer, this.job.model.maxLen, shardRows(batchSize, ranks, rank));
    const learningRate = learningRateAt(step, this.schedule);
    const local = this.localGradients(shard, shardDropoutSeed(this.job.seed, step, rank));
    // Disposing twice is harmless: flatten() already disposed them on a gang of several.
    const release = (): void => tf.dispose([...local.grads, local.totals]);
    // A gang of one sums only its totals and keeps its gradients on the device: the sum over one rank is the rank's
    // own, so the update is the same bits as through the flat buffer, without its copies. The exchange still happens,
    // because failing it is how the agent stops a gang at a step boundary (to grow it, say).
    const alone = ranks === 1;
    let computed: number;
    let summed: Float32Array;
    try {
      const flat = alone ? await readFloats(local.totals) : await this.flatten(local);
      computed = performance.now();
      summed = await this.exchange(reduce, flat, 'gradients');
    } catch (error) {
      release();
      this.source.setState(position);
      throw error;
    }
    const reduced = performance.now();
    const [loss = NaN, right = 0, answers = 0] = alone ? summed : summed.subarray(this.layout.gradients);
    const norm = tf.tidy(() => this.optimizer.apply(alone ? local.grads : this.unflatten(summed), learningRate));
    release();
    const [gradNorm = NaN] = await norm.data();
    norm.dispose();
    this.stepsDone += 1;
    this.tokensSeen += shard.globalTokens;
    if (!Number.isFinite(loss)) {
      this.trainMs += performance.now() - started;
      throw new NonFiniteLossError(this.stepsDone, loss);
    }
    const elapsed = performance.now() - started;
    this.trainMs += elapsed;
    this.timing.steps += 1;
    this.timing.computeMs += computed - started;
    this.timing.reduceMs += reduced - computed;
    this.timing.applyMs += started + elapsed - reduced;
    const accuracy = answers > 0 ? right / answers : Number.NaN;
    return this.stepDone({ loss, learningRate, gradNorm, tokens: shard.globalTokens, elapsed, accuracy });
  }

  /**
   * sha256 of this replica's whole training state: weights, optimizer moments and step, the trainer's step and data
   * position. Equal on every rank of a healthy gang.
   */
  async stateHash(): Promise<Uint8Array> {
    const hash = createHash('sha256');
    const add = async (t: tf.Tensor): Promise<void> => {
      const data = await t.data();
      hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    };
    for (const v of this.model.variables) await add(v);
    for (const m of this.optimizer.m) await add(m);
    for (const v of this.optimizer.v) await add(v);
    hash.update(JSON.stringify({ step: this.stepsDone, adam: this.optimizer.step, source: this.source.getState() }));
    return new Uint8Array(hash.digest());
  }

  /**
   * Every rank's state hash, exchanged through the reducer (each rank fills its own slot, the rest are zeros, so the
   * sum is an exact gather); throws ReplicaDivergenceError on every rank when any two differ. A collective: all ranks
   * call it at the same point (trainStep does, after every `hashEvery` steps).
   */
  async checkReplicas(): Promise<void> {
    const { rank, ranks, reduce } = this.current;
    const mine = await this.stateHash();
    const slots = new Float32Array(ranks * HASH_BYTES);
    slots.set(mine, rank * HASH_BYTES);
    const all = await this.exchange(reduce, slots, 'state hashes');
    const hashes = Array.from({ length: ranks }, (_, r) =>
      Buffer.from(Uint8Array.from(all.subarray(r * HASH_BYTES, (r + 1) * HASH_BYTES))).toString('hex'),
    );
    if (hashes.some((h) => h !== hashes[0])) throw new ReplicaDivergenceError(this.stepsDone, hashes, rank);
  }

  /**
   * This rank's shard's gradients of the globally normalized loss (in `variables` order) and its totals, on the
   * device; the caller disposes them.
   */
  private localGradients(shard: ShardBatch, seed: number): { grads: tf.Tensor[]; totals: tf.Tensor } {
    const variables = this.model.variables;
    // A rank without rows (more ranks than rows) adds nothing, but still takes part in the sum.
    if (shard.batchSize === 0)
      return { grads: variables.map((v) => tf.zerosLike(v)), totals: tf.zeros([STEP_TOTALS.length]) };
    const vocab = this.tokenizer.vocabSize;
    let totals: tf.Tensor | undefined;
    const grads = tf.tidy(() => {
      const ids = tf.tensor2d(shard.ids, [shard.batchSize, shard.length], 'int32');
      const weights = tf.tensor3d(shard.weights, [shard.batchSize, shard.length, vocab]);
      const { grads: byName } = tf.variableGrads(() => {
        const logits = this.model.forward(ids, { training: true, dropoutSeed: seed }).logits;
        const loss = maskedCrossEntropy(logits, weights);
        // Kept past the gradient's own tidy, for the same read-back as the gradients.
        totals = tf.keep(tf.stack([loss, ...answerTokenCounts(logits, weights)]));
        return loss;
      }, variables);
      // A variable the loss does not touch gets a zero gradient.
      return variables.map((v) => byName[v.name] ?? tf.zerosLike(v));
    });
    return { grads, totals: totals as tf.Tensor };
  }

  /**
   * The flat buffer of a rank's contribution: every gradient, row-major in `variables` order, then its totals. It
   * disposes those tensors once they are concatenated, so that they are not held through the exchange.
   */
  private async flatten(local: { grads: tf.Tensor[]; totals: tf.Tensor }): Promise<Float32Array> {
    const flat = tf.tidy(() => tf.concat([...local.grads.map((g) => tf.reshape(g, [-1])), local.totals]));
    tf.dispose([...local.grads, local.totals]);
    try {
      return await readFloats(flat);
    } finally {
      flat.dispose();
    }
  }

  private unflatten(summed: Float32Array): tf.Tensor[] {
    const { offsets, sizes, shapes } = this.layout;
    return shapes.map((shape, i) => {
      const at = offsets[i] as number;
      return tf.tensor(summed.subarray(at, at + (sizes[i] as number)), shape, 'float32');
    });
  }

  private async exchange(reduce: Reducer, flat: Float32Array, what: string): Promise<Float32Array> {
    const length = flat.length;
    let summed: Float32Array;
    try {
      summed = await reduce(flat);
    } catch (error) {
      if (error instanceof GangInterruptedError) throw error;
      throw new GangInterruptedError(
        `rank ${this.current.rank} of ${this.current.ranks}: the ${what} exchange of step ${this.stepsDone + 1} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (!(summed instanceof Float32Array) || summed.length !== length) {
      const got = summed instanceof Float32Array ? `${summed.length} floats` : typeof summed;
      throw new GradientExchangeError(
        `rank ${this.current.rank} of ${this.current.ranks}: the reducer returned ${got} for ${length} floats of ${what} at step ${this.stepsDone}`,
      );
    }
    return summed;
  }
}
