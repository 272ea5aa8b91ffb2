// The training loop: batches from an ExampleSource, masked cross entropy, AdamW with clipping and the schedule.
// One host sync per step (loss and gradient norm packed together); the rest stays on the device.
// Exact resume: dropout seeds derive from (seed, step), data comes from the source's saved state, the optimizer
// moments and weights are saved bit for bit, and the schedule is a pure function of the step.
import * as tf from '@tensorflow/tfjs';
import type { JobSpec, MetricPoint } from '../../protocol/messages.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { ExampleSource, SourceState } from '../data/types.ts';
import { AdamW } from './adamw.ts';
import { makeBatch, type Batch } from './batches.ts';
import { decodeCheckpoint, encodeCheckpoint, type TensorRecord } from './checkpoint.ts';
import { CheckpointError, NonFiniteLossError } from './errors.ts';
import { learningRateAt, type ScheduleSpec } from './schedule.ts';

/** What the trainer needs from a model (src/model/transformer.ts's Transformer fits). */
export interface TrainableModel {
  readonly variables: tf.Variable[];
  forward(ids: tf.Tensor2D, options: { training: boolean; dropoutSeed?: number }): { logits: tf.Tensor3D };
  parameterCount(): number;
  dispose(): void;
}

export interface TrainerOptions {
  model: TrainableModel;
  source: ExampleSource;
  tokenizer: Tokenizer;
  job: JobSpec;
  decay?: ScheduleSpec['decay'];
  /** Called after every step (progress bars, metric streaming). */
  onStep?: (point: MetricPoint) => void;
}

/** Everything a checkpoint carries besides tensors. */
export interface CheckpointMeta {
  kind: 'pe-arena-training-state';
  step: number;
  seed: number;
  job: JobSpec;
  source: SourceState;
  optimizer: { step: number; beta1: number; beta2: number; epsilon: number; weightDecay: number; clipNorm: number };
  /** Dropout seeds derive from these, so the RNG state is (seed, step). */
  rng: { dropoutSeedBase: number };
  vocabSize: number;
  parameterShapes: number[][];
  /** Milliseconds of training so far, so tokens/s and wall time survive a resume. */
  trainMs: number;
  tokensSeen: number;
}

/** A 32-bit mix of (seed, step): a fresh dropout mask per step, the same one after a resume. */
export function dropoutSeed(seed: number, step: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(step >>> 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** Masked mean cross entropy, given the batch's weights tensor (one-hot / target count). */
export function maskedCrossEntropy(logits: tf.Tensor3D, weights: tf.Tensor3D): tf.Scalar {
  return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), weights))) as tf.Scalar;
}

/** Share of answer tokens (those with loss weight) the model predicts right, teacher-forced: the live view's acc. */
export function answerTokenAccuracy(logits: tf.Tensor3D, weights: tf.Tensor3D): tf.Scalar {
  return tf.tidy(() => {
    const mask = tf.cast(tf.greater(tf.sum(weights, -1), 0), 'float32');
    const right = tf.cast(tf.equal(tf.argMax(logits, -1), tf.argMax(weights, -1)), 'float32');
    return tf.div(tf.sum(tf.mul(right, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}

function checkMeta(raw: unknown): CheckpointMeta {
  const m = raw as Partial<CheckpointMeta> | null;
  if (typeof m !== 'object' || m === null || m.kind !== 'pe-arena-training-state')
    throw new CheckpointError('checkpoint metadata is not a pe-arena training state');
  const num = (x: unknown, what: string): number => {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw new CheckpointError(`checkpoint metadata: ${what} is not a number`);
    return x;
  };
  num(m.step, 'step');
  num(m.seed, 'seed');
  num(m.vocabSize, 'vocabSize');
  if (typeof m.job !== 'object' || m.job === null || typeof m.job.encoding !== 'string')
    throw new CheckpointError('checkpoint metadata: job spec is missing');
  const src = m.source;
  if (typeof src !== 'object' || src === null || !Array.isArray(src.rng) || src.rng.length !== 4)
    throw new CheckpointError('checkpoint metadata: data position (source state) is missing');
  if (typeof m.optimizer !== 'object' || m.optimizer === null)
    throw new CheckpointError('checkpoint metadata: optimizer state is missing');
  num(m.optimizer.step, 'optimizer.step');
  if (!Array.isArray(m.parameterShapes)) throw new CheckpointError('checkpoint metadata: parameterShapes is missing');
  return m as CheckpointMeta;
}

/** Reads and verifies a training checkpoint (throws CheckpointError on anything wrong). */
export function readTrainingCheckpoint(bytes: Uint8Array): {
  meta: CheckpointMeta;
  tensors: Map<string, TensorRecord>;
} {
  const { meta, tensors } = decodeCheckpoint(bytes, checkMeta);
  const n = meta.parameterShapes.length;
  for (let i = 0; i < n; i++) {
    for (const kind of ['param', 'adam_m', 'adam_v']) {
      const t = tensors.get(`${kind}/${i}`);
      if (t === undefined) throw new CheckpointError(`checkpoint lacks tensor ${kind}/${i}`);
      if (t.shape.join(',') !== (meta.parameterShapes[i] ?? []).join(',')) {
        throw new CheckpointError(
          `checkpoint tensor ${kind}/${i} has shape [${t.shape.join(',')}], metadata says [${(meta.parameterShapes[i] ?? []).join(',')}]`,
        );
      }
    }
  }
  return { meta, tensors };
}

export class Trainer {
  readonly model: TrainableModel;
  readonly optimizer: AdamW;
  readonly job: JobSpec;
  // Protected for the data-parallel step (data-parallel.ts), which replaces trainStep and keeps the rest.
  protected readonly source: ExampleSource;
  protected readonly tokenizer: Tokenizer;
  protected readonly schedule: ScheduleSpec;
  protected readonly onStep: ((point: MetricPoint) => void) | undefined;
  protected stepsDone = 0;
  protected trainMs = 0;
  protected tokensSeen = 0;

  constructor(options: TrainerOptions) {
    this.model = options.model;
    this.source = options.source;
    this.tokenizer = options.tokenizer;
    this.job = options.job;
    this.onStep = options.onStep;
    const t = options.job.training;
    this.optimizer = new AdamW(this.model.variables, { weightDecay: t.weightDecay, clipNorm: t.clipNorm });
    this.schedule = {
      peak: t.learningRate,
      warmupSteps: t.warmupSteps,
      totalSteps: t.steps,
      decay: options.decay ?? 'cosine',
    };
  }

  get step(): number {
    return this.stepsDone;
  }

  get done(): boolean {
    return this.stepsDone >= this.job.training.steps;
  }

  /** Mean tokens/s over all training so far (including before a resume). */
  get tokensPerSecond(): number {
    return this.trainMs > 0 ? (this.tokensSeen * 1000) / this.trainMs : 0;
  }

  /** Non-pad input tokens trained on so far (including before a resume). */
  get tokensProcessed(): number {
    return this.tokensSeen;
  }

  get trainSeconds(): number {
    return this.trainMs / 1000;
  }

  nextBatch(): Batch {
    const examples = Array.from({ length: this.job.training.batchSize }, () => this.source.next());
    return makeBatch(examples, this.tokenizer, this.job.model.maxLen);
  }

  /** One optimizer step; throws NonFiniteLossError (non-retryable) when the loss is NaN or infinite. */
  async trainStep(): Promise<MetricPoint> {
    const started = performance.now();
    const step = this.stepsDone;
    const batch = this.nextBatch();
    const learningRate = learningRateAt(step, this.schedule);
    const seed = dropoutSeed(this.job.seed, step);
    const variables = this.model.variables;
    let accuracy: tf.Scalar | undefined;
    const pack = tf.tidy(() => {
      const ids = tf.tensor2d(batch.ids, [batch.batchSize, batch.length], 'int32');
      const weights = tf.tensor3d(batch.weights, [batch.batchSize, batch.length, this.tokenizer.vocabSize]);
      const { value, grads } = tf.variableGrads(() => {
        const logits = this.model.forward(ids, { training: true, dropoutSeed: seed }).logits;
        // Kept past the gradient's own tidy so it rides along in the one read-back per step.
        accuracy = tf.keep(answerTokenAccuracy(logits, weights));
        return maskedCrossEntropy(logits, weights);
      }, variables);
      const ordered = variables.map((v) => {
        const g = grads[v.name];
        // A variable the loss does not touch (e.g. an unused table) gets a zero gradient.
        return g ?? tf.zerosLike(v);
      });
      const norm = this.optimizer.apply(ordered, learningRate);
      return tf.stack([value, norm, accuracy ?? tf.scalar(NaN)]);
    });
    const [loss = NaN, gradNorm = NaN, tokenAccuracy = NaN] = await pack.data();
    pack.dispose();
    accuracy?.dispose();
    const elapsed = performance.now() - started;
    this.stepsDone += 1;
    this.trainMs += elapsed;
    this.tokensSeen += batch.tokens;
    if (!Number.isFinite(loss)) throw new NonFiniteLossError(this.stepsDone, loss);
    return this.stepDone({ loss, learningRate, gradNorm, tokens: batch.tokens, elapsed, accuracy: tokenAccuracy });
  }

  /** The metric point of the step just applied (single-agent and data-parallel alike), told to onStep. */
  protected stepDone(s: {
    loss: number;
    learningRate: number;
    gradNorm: number;
    /** Tokens of the whole (global) batch. */
    tokens: number;
    elapsed: number;
    /** Share of answer tokens predicted right; NaN when the batch had none. */
    accuracy: number;
  }): MetricPoint {
    const point: MetricPoint = {
      step: this.stepsDone,
      loss: s.loss,
      learningRate: s.learningRate,
      gradNorm: s.gradNorm,
      tokensPerSecond: s.elapsed > 0 ? (s.tokens * 1000) / s.elapsed : 0,
      time: Date.now(),
      ...(Number.isFinite(s.accuracy) ? { accuracy: s.accuracy } : {}),
    };
    this.onStep?.(point);
    return point;
  }

  /** Up to n more steps, never past the job's total. */
  async trainSteps(n: number): Promise<MetricPoint[]> {
    const points: MetricPoint[] = [];
    const target = Math.min(this.job.training.steps, this.stepsDone + Math.max(0, Math.floor(n)));
    while (this.stepsDone < target) points.push(await this.trainStep());
    return points;
  }

  async checkpoint(): Promise<Uint8Array> {
    const variables = this.model.variables;
    const tensors: TensorRecord[] = [];
    const read = async (t: tf.Tensor): Promise<Float32Array> => new Float32Array(await t.data());
    for (let i = 0; i < variables.length; i++) {
      const v = variables[i] as tf.Variable;
      tensors.push({ name: `param/${i}`, shape: v.shape, dtype: 'float32', data: await read(v) });
      tensors.push({
        name: `adam_m/${i}`,
        shape: v.shape,
        dtype: 'float32',
        data: await read(this.optimizer.m[i] as tf.Variable),
      });
      tensors.push({
        name: `adam_v/${i}`,
        shape: v.shape,
        dtype: 'float32',
        data: await read(this.optimizer.v[i] as tf.Variable),
      });
    }
    const o = this.optimizer;
    const meta: CheckpointMeta = {
      kind: 'pe-arena-training-state',
      step: this.stepsDone,
      seed: this.job.seed,
      job: this.job,
      source: this.source.getState(),
      optimizer: {
        step: o.step,
        beta1: o.beta1,
        beta2: o.beta2,
        epsilon: o.epsilon,
        weightDecay: o.weightDecay,
        clipNorm: o.clipNorm,
      },
      rng: { dropoutSeedBase: this.job.seed },
      vocabSize: this.tokenizer.vocabSize,
      parameterShapes: variables.map((v) => v.shape),
      trainMs: this.trainMs,
      tokensSeen: this.tokensSeen,
    };
    return encodeCheckpoint(meta, tensors);
  }

  /** Loads weights, optimizer moments, step and data position; the model must have the same shapes. */
  restore(bytes: Uint8Array): CheckpointMeta {
    const { meta, tensors } = readTrainingCheckpoint(bytes);
    const variables = this.model.variables;
    if (meta.parameterShapes.length !== variables.length) {
      throw new CheckpointError(
        `checkpoint holds ${meta.parameterShapes.length} parameter tensors, this model has ${variables.length} (different encoding or preset?)`,
      );
    }
    if (meta.vocabSize !== this.tokenizer.vocabSize)
      throw new CheckpointError(
        `checkpoint vocabulary is ${meta.vocabSize}, tokenizer has ${this.tokenizer.vocabSize}`,
      );
    variables.forEach((v, i) => {
      const shape = (meta.parameterShapes[i] ?? []).join(',');
      if (shape !== v.shape.join(','))
        throw new CheckpointError(
          `checkpoint parameter ${i} has shape [${shape}], the model's ${v.name} is [${v.shape.join(',')}] (different preset?)`,
        );
    });
    const get = (name: string): Float32Array => tensors.get(name)?.data as Float32Array;
    variables.forEach((v, i) => tf.tidy(() => v.assign(tf.tensor(get(`param/${i}`), v.shape, 'float32'))));
    this.optimizer.setState({
      step: meta.optimizer.step,
      m: variables.map((_, i) => get(`adam_m/${i}`)),
      v: variables.map((_, i) => get(`adam_v/${i}`)),
    });
    this.source.setState(meta.source);
    this.stepsDone = meta.step;
    this.trainMs = meta.trainMs;
    this.tokensSeen = meta.tokensSeen;
    return meta;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
