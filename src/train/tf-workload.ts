// The Workload the node agent drives (src/train/workload.ts), built on TensorFlow.js: picks the backend, builds
// the data source and the transformer for a JobSpec, trains, checkpoints, resumes exactly, and evaluates.
// No module-level state: the agent runs this inside a worker thread, one workload per job.
import * as tf from '@tensorflow/tfjs';
import type { Evaluation, JobSpec, MetricPoint } from '../../protocol/messages.ts';
import { BOS, EOS, tokenizer } from '../data/tokenizer.ts';
import type { Example } from '../data/types.ts';
import { createSource, taskNumberOrder } from '../data/tasks.ts';
import { evaluationSets } from '../eval/evaluation-sets.ts';
import { attentionEntropy, longestPassingLength, mergeEntropy, scoreProblems, type Scores } from '../eval/metrics.ts';
import { attentionMaps, greedyDecode } from '../model/decode.ts';
import { MAPE_DEFAULT_MAX_OFFSET } from '../model/positional/mape.ts';
import { Transformer } from '../model/transformer.ts';
import { selectBackend } from './backend.ts';
import { CheckpointError, TrainConfigError } from './errors.ts';
import { checkJobSpec } from './job.ts';
import { readTrainingCheckpoint, Trainer, type CheckpointMeta } from './trainer.ts';
import { DataParallelTrainer } from './data-parallel.ts';
import type {
  BackendName,
  CreateWorkload,
  GangControl,
  PrepareWorkload,
  Workload,
  WorkloadOptions,
} from './workload.ts';

/** Examples whose attention maps feed the entropy table (a few are enough for a stable mean). */
const ENTROPY_EXAMPLES = 8;
const DECODE_BATCH = 64;

export interface EvaluationOptions {
  /** Called after each decoded batch: (done, total). */
  onProgress?: (done: number, total: number) => void;
}

function sameModel(a: JobSpec, b: JobSpec): string | null {
  if (a.encoding !== b.encoding) return `encoding ${b.encoding} in the checkpoint, ${a.encoding} in the job`;
  if (a.encoding === 'mape') {
    // The other encodings ignore these; compared as the model uses them (absent: offset on, roles on).
    const offset = (m: JobSpec['model']): number =>
      m.mapeOffset === false ? 0 : (m.mapeMaxOffset ?? MAPE_DEFAULT_MAX_OFFSET);
    if (offset(a.model) !== offset(b.model))
      return `model.mapeMaxOffset is ${offset(b.model)} in the checkpoint, ${offset(a.model)} in the job`;
    if ((a.model.mapeRoles !== false) !== (b.model.mapeRoles !== false))
      return `model.mapeRoles is ${b.model.mapeRoles !== false} in the checkpoint, ${a.model.mapeRoles !== false} in the job`;
    if ((a.model.mapeRelative === true) !== (b.model.mapeRelative === true))
      return `model.mapeRelative is ${b.model.mapeRelative === true} in the checkpoint, ${a.model.mapeRelative === true} in the job`;
  }
  for (const k of ['layers', 'dModel', 'heads', 'ffnDim', 'maxLen', 'attentionLogitCap', 'sinusoidalStride'] as const) {
    if (k === 'sinusoidalStride' && a.encoding !== 'sinusoidal') continue; // the other encodings ignore it
    const absent = k === 'sinusoidalStride' ? 1 : 0; // an absent cap is no cap, an absent stride is 1
    const [job, saved] = [a.model[k] ?? absent, b.model[k] ?? absent];
    if (job !== saved) return `model.${k} is ${saved} in the checkpoint, ${job} in the job`;
  }
  return null;
}

/** Builds the transformer a job describes (weights from the job seed). */
export function buildModel(spec: JobSpec): Transformer {
  return Transformer.create(
    {
      ...spec.model,
      vocabSize: tokenizer.vocabSize,
      encoding: spec.encoding,
      // MAPE reads the digits as the task writes them (least-significant first when reversed).
      mapeNumberOrder: taskNumberOrder(spec.task),
    },
    spec.seed,
  );
}

/** Loads a checkpoint or final model blob into a fresh transformer, for serving and reports. */
export function loadModel(bytes: Uint8Array): { model: Transformer; job: JobSpec; step: number } {
  const { meta, tensors } = readTrainingCheckpoint(bytes);
  const model = buildModel(meta.job);
  try {
    if (model.variables.length !== meta.parameterShapes.length) {
      throw new CheckpointError(
        `checkpoint holds ${meta.parameterShapes.length} parameter tensors, the ${meta.job.encoding} model has ${model.variables.length}`,
      );
    }
    model.variables.forEach((v, i) => {
      const t = tensors.get(`param/${i}`);
      if (t === undefined || t.shape.join(',') !== v.shape.join(','))
        throw new CheckpointError(`checkpoint parameter ${i} does not fit ${v.name} [${v.shape.join(',')}]`);
      tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, v.shape, 'float32')));
    });
  } catch (error) {
    model.dispose();
    throw error;
  }
  return { model, job: meta.job, step: meta.step };
}

/** Greedy predictions for examples; problems too long for the model predict "" (scored wrong, not a crash). */
export function predict(
  model: Transformer,
  examples: readonly Example[],
  maxLen: number,
  onBatch?: (done: number) => void,
): string[] {
  const out: string[] = new Array<string>(examples.length).fill('');
  const prompts = examples.map((e) => [BOS, ...tokenizer.encode(e.prompt)]);
  const targetLength = Math.max(1, ...examples.map((e) => tokenizer.encode(e.target).length));
  // Room for the longest target plus a little (so over-long answers show up as errors) and the EOS.
  const wanted = targetLength + 4;
  // Prompts of one length share a token budget that fits maxLen (greedyDecode batches each length itself).
  const byLength = new Map<number, number[]>();
  prompts.forEach((p, i) => {
    if (p.length >= maxLen) return;
    const group = byLength.get(p.length);
    if (group === undefined) byLength.set(p.length, [i]);
    else group.push(i);
  });
  let done = 0;
  for (const [length, indices] of [...byLength].sort((a, b) => a[0] - b[0])) {
    const maxNewTokens = Math.min(wanted, maxLen - length);
    const decoded = greedyDecode(
      model,
      indices.map((i) => prompts[i] as number[]),
      { maxNewTokens, eosId: EOS, batchSize: DECODE_BATCH },
    );
    indices.forEach((i, k) => {
      out[i] = tokenizer.decode(decoded[k] ?? []);
    });
    done += indices.length;
    onBatch?.(done);
  }
  return out;
}

function mergeScores(
  parts: { scores: Scores; weight: number }[],
): Pick<Evaluation, 'perLength' | 'errorTaxonomy' | 'problems' | 'longestLength90'> {
  const pooled = new Map<number, { n: number; correct: number; digits: number }>();
  const errorTaxonomy: Evaluation['errorTaxonomy'] = {};
  const problems: Evaluation['problems'] = [];
  for (const { scores } of parts) {
    // The length sets may overlap the training lengths: pool the buckets by count.
    for (const [k, b] of Object.entries(scores.perLength)) {
      const prev = pooled.get(Number(k)) ?? { n: 0, correct: 0, digits: 0 };
      pooled.set(Number(k), {
        n: prev.n + b.n,
        correct: prev.correct + b.exactMatch * b.n,
        digits: prev.digits + b.digitAccuracy * b.n,
      });
    }
    for (const [k, n] of Object.entries(scores.errorTaxonomy)) errorTaxonomy[k] = (errorTaxonomy[k] ?? 0) + n;
    problems.push(...scores.problems);
  }
  const perLength: Evaluation['perLength'] = {};
  for (const [k, b] of [...pooled].sort((a, c) => a[0] - c[0]))
    perLength[String(k)] = { n: b.n, exactMatch: b.correct / b.n, digitAccuracy: b.digits / b.n };
  return { perLength, errorTaxonomy, problems, longestLength90: longestPassingLength(perLength, 0.9) };
}

export class TfWorkload implements Workload {
  private disposed = false;
  readonly gang?: GangControl;

  constructor(
    readonly spec: JobSpec,
    readonly backend: BackendName,
    readonly model: Transformer,
    readonly trainer: Trainer,
    private readonly createdAt: number,
  ) {
    if (trainer instanceof DataParallelTrainer) {
      const reduce = trainer.membership.reduce;
      this.gang = {
        setMembership: (rank, ranks) => trainer.setMembership({ rank, ranks, reduce }),
        restore: (state) => {
          this.assertLive();
          trainer.restore(state);
        },
        takeTiming: () => trainer.takeTiming(),
      };
    }
  }

  get step(): number {
    return this.trainer.step;
  }

  get parameterCount(): number {
    return this.model.parameterCount();
  }

  async trainSteps(n: number): Promise<MetricPoint[]> {
    this.assertLive();
    return this.trainer.trainSteps(n);
  }

  async checkpoint(): Promise<Uint8Array> {
    this.assertLive();
    return this.trainer.checkpoint();
  }

  async exportModel(): Promise<Uint8Array> {
    return this.checkpoint();
  }

  async evaluate(options: EvaluationOptions = {}): Promise<Evaluation> {
    this.assertLive();
    const started = performance.now();
    const { spec } = this;
    const maxLen = spec.model.maxLen;
    const drawn = evaluationSets(spec);
    const total = drawn.reduce((a, d) => a + d.examples.length, 0);
    let before = 0;
    const parts = drawn.map((d) => {
      const predictions = predict(this.model, d.examples, maxLen, (done) => options.onProgress?.(before + done, total));
      before += d.examples.length;
      return { scores: scoreProblems(d.examples, predictions, d.split), weight: d.examples.length };
    });
    const main = (parts[0] as { scores: Scores }).scores;
    const entropyExamples = (drawn[0]?.examples ?? []).slice(0, ENTROPY_EXAMPLES);
    const tables = entropyExamples
      .map((e) => [BOS, ...tokenizer.encode(e.prompt), ...tokenizer.encode(e.target)])
      .filter((ids) => ids.length <= maxLen)
      .map((ids) => attentionEntropy(attentionMaps(this.model, ids)));
    const evalSeconds = (performance.now() - started) / 1000;
    return {
      jobId: spec.jobId,
      encoding: spec.encoding,
      task: spec.task.name,
      seed: spec.seed,
      backend: this.backend,
      steps: this.trainer.step,
      wallTimeS: this.trainer.trainSeconds + evalSeconds,
      parameters: this.parameterCount,
      tokensPerSecond: this.trainer.tokensPerSecond,
      exactMatch: main.exactMatch,
      digitAccuracy: main.digitAccuracy,
      symbolicAccuracy: main.symbolicAccuracy,
      stepAccuracy: main.stepAccuracy,
      attentionEntropy: mergeEntropy(tables),
      ...mergeScores(parts),
    };
  }

  /** Seconds since this workload was created (this process only). */
  get uptimeSeconds(): number {
    return (performance.now() - this.createdAt) / 1000;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.trainer.dispose();
    this.model.dispose();
  }

  private assertLive(): void {
    if (this.disposed) throw new TrainConfigError(`workload for job ${this.spec.jobId} was disposed`);
  }
}

/** Like createWorkload, with the concrete type (CLI and benches use trainer hooks and the model). */
export async function createTfWorkload(
  spec: JobSpec,
  options: WorkloadOptions & { onStep?: (point: MetricPoint) => void } = {},
): Promise<TfWorkload> {
  const createdAt = performance.now();
  const log = options.log ?? (() => {});
  const errors = checkJobSpec(spec);
  if (errors.length > 0) throw new TrainConfigError(`invalid job ${String(spec.jobId)}: ${errors.join('; ')}`);
  let resumeMeta: CheckpointMeta | undefined;
  if (options.resumeFrom !== undefined) {
    // Verify the blob before building anything: a bad checkpoint must not cost a model build.
    resumeMeta = readTrainingCheckpoint(options.resumeFrom).meta;
    const mismatch = sameModel(spec, resumeMeta.job);
    if (mismatch !== null)
      throw new CheckpointError(`checkpoint does not belong to job ${String(spec.jobId)}: ${mismatch}`);
  }
  const choice = await selectBackend(options.backend, log);
  const source = createSource(spec.task, spec.seed, 'train');
  const model = buildModel(spec);
  let trainer: Trainer | undefined;
  try {
    const common = {
      model,
      source,
      tokenizer,
      job: spec,
      ...(options.onStep === undefined ? {} : { onStep: options.onStep }),
    };
    trainer =
      options.gang === undefined
        ? new Trainer(common)
        : new DataParallelTrainer({ ...common, membership: { rank: 0, ranks: 1, reduce: options.gang.reduce } });
    if (options.resumeFrom !== undefined) {
      trainer.restore(options.resumeFrom);
      log(`resumed job ${String(spec.jobId)} at step ${trainer.step} of ${spec.training.steps}`);
    }
  } catch (error) {
    trainer?.dispose();
    model.dispose();
    throw error;
  }
  log(
    `job ${String(spec.jobId)}: ${spec.encoding} on ${spec.task.name}, ${model.parameterCount()} parameters, backend ${choice.name}`,
  );
  return new TfWorkload(spec, choice.name, model, trainer, createdAt);
}

export const createWorkload: CreateWorkload = (spec, options) => createTfWorkload(spec, options);

/** Loads TensorFlow.js and initialises the backend: the slow part of a job's start, done ahead of the job. */
export const prepareWorkload: PrepareWorkload = async (options = {}) => {
  await selectBackend(options.backend, options.log ?? (() => {}));
};
