// Job specs for single-process training (pe-arena train, benches, tests): builds a JobSpec from a few choices (the
// model from a preset of protocol/presets.ts) and checks one, naming the offending field, before any tensor is made.
import {
  ENCODINGS,
  type DataParallelSpec,
  type EncodingName,
  type JobId,
  type JobSpec,
  type ModelSpec,
  type RunId,
  type TaskSpec,
} from '../../protocol/messages.ts';
import { ConfigFileError } from '../../protocol/config-file.ts';
import { checkModelSpec, loadPresets, modelForEncoding, PRESETS_FILE } from '../../protocol/presets.ts';
import { dataParallelProblems, describe } from '../../protocol/validate.ts';
import { TrainConfigError } from './errors.ts';

export function presetModel(name: string, file = PRESETS_FILE): ModelSpec {
  let presets: Record<string, ModelSpec>;
  try {
    presets = loadPresets(file);
  } catch (error) {
    // Training reports its configuration problems as its own errors.
    if (error instanceof ConfigFileError) throw new TrainConfigError(error.message, { cause: error });
    throw error;
  }
  const spec = presets[name];
  if (spec === undefined)
    throw new TrainConfigError(`unknown preset ${JSON.stringify(name)} (known: ${Object.keys(presets).join(', ')})`);
  return { ...spec };
}

/** Every problem with a job spec's training-relevant fields, each naming its field; empty when usable. */
export function checkJobSpec(spec: JobSpec): string[] {
  const errors: string[] = [];
  if (!(ENCODINGS as readonly string[]).includes(spec.encoding))
    errors.push(`job.encoding: unknown encoding ${JSON.stringify(spec.encoding)} (known: ${ENCODINGS.join(', ')})`);
  if (!Number.isInteger(spec.seed)) errors.push(`job.seed: must be an integer (got ${JSON.stringify(spec.seed)})`);
  errors.push(...checkModelSpec(spec.model, 'job.model'));
  const t = spec.training as unknown as Record<string, unknown>;
  const positiveInt = (field: string): void => {
    const v = t[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      errors.push(`job.training.${field}: must be a positive integer (got ${JSON.stringify(v)})`);
  };
  positiveInt('steps');
  positiveInt('batchSize');
  const nonNeg = (field: string, max = Infinity): void => {
    const v = t[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max)
      errors.push(`job.training.${field}: must be a number in [0, ${max}] (got ${JSON.stringify(v)})`);
  };
  nonNeg('learningRate', 10);
  nonNeg('warmupSteps');
  nonNeg('weightDecay', 10);
  nonNeg('clipNorm');
  if (t['learningRate'] === 0) errors.push('job.training.learningRate: must be above 0');
  if (t['dataParallel'] !== undefined) {
    for (const p of dataParallelProblems(t['dataParallel'], spec.training.batchSize))
      errors.push(
        `job.training.dataParallel${p.field === '' ? '' : `.${p.field}`}: must be ${p.expected} (got ${describe(p.got)})`,
      );
  }
  const e = spec.evaluation as unknown as Record<string, unknown> | undefined;
  if (
    e === undefined ||
    typeof e['samples'] !== 'number' ||
    !Number.isInteger(e['samples']) ||
    (e['samples'] as number) < 0
  ) {
    errors.push(`job.evaluation.samples: must be a non-negative integer (got ${JSON.stringify(e?.['samples'])})`);
  }
  if (!Number.isInteger(spec.checkpointEvery) || spec.checkpointEvery < 0)
    errors.push(`job.checkpointEvery: must be a non-negative integer (got ${JSON.stringify(spec.checkpointEvery)})`);
  return errors;
}

export interface JobChoices {
  encoding: EncodingName;
  task: TaskSpec;
  preset?: string;
  model?: ModelSpec;
  seed?: number;
  steps?: number;
  batchSize?: number;
  learningRate?: number;
  warmupSteps?: number;
  weightDecay?: number;
  clipNorm?: number;
  dataParallel?: DataParallelSpec;
  evalSamples?: number;
  lengthTask?: TaskSpec;
  lengthSamples?: number;
  /** Per-length test sets (addition, multiplication): operand lengths from..to, perLength problems each. */
  lengthRange?: [number, number];
  perLength?: number;
  checkpointEvery?: number;
  jobId?: string;
  runId?: string;
}

/** A complete JobSpec with sensible defaults for anything not chosen. */
export function buildJobSpec(c: JobChoices): JobSpec {
  const preset = c.preset ?? 'tiny';
  const steps = c.steps ?? 2000;
  const seed = c.seed ?? 1;
  const spec: JobSpec = {
    jobId: (c.jobId ?? `${c.encoding}-${c.task.name}-s${seed}`) as JobId,
    runId: (c.runId ?? 'local') as RunId,
    encoding: c.encoding,
    task: c.task,
    seed,
    preset,
    model: modelForEncoding(c.encoding, c.model ?? presetModel(preset)),
    training: {
      steps,
      batchSize: c.batchSize ?? 64,
      learningRate: c.learningRate ?? 1e-3,
      warmupSteps: c.warmupSteps ?? Math.min(200, Math.floor(steps / 10)),
      weightDecay: c.weightDecay ?? 0.01,
      clipNorm: c.clipNorm ?? 1,
      ...(c.dataParallel === undefined ? {} : { dataParallel: c.dataParallel }),
    },
    evaluation: {
      samples: c.evalSamples ?? 200,
      ...(c.lengthTask === undefined
        ? {}
        : { lengthTask: c.lengthTask, lengthSamples: c.lengthSamples ?? c.evalSamples ?? 200 }),
      ...(c.lengthRange === undefined ? {} : { lengthRange: c.lengthRange }),
      ...(c.perLength === undefined ? {} : { perLength: c.perLength }),
    },
    checkpointEvery: c.checkpointEvery ?? 500,
  };
  const errors = checkJobSpec(spec);
  if (errors.length > 0) throw new TrainConfigError(`invalid job: ${errors.join('; ')}`);
  return spec;
}
