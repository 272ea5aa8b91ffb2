// Presets and job specs for single-process training (pe-arena train, benches, tests): builds a JobSpec from a
// few choices and checks one, naming the offending field, before any tensor is made.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ENCODINGS,
  type EncodingName,
  type JobId,
  type JobSpec,
  type ModelSpec,
  type RunId,
  type TaskSpec,
} from '../../protocol/messages.ts';
import { TrainConfigError } from './errors.ts';

export const PRESETS_FILE = join(import.meta.dirname, '..', '..', 'configs', 'presets.json');

const MODEL_FIELDS = [
  'layers',
  'dModel',
  'heads',
  'ffnDim',
  'dropout',
  'maxLen',
] as const satisfies readonly (keyof ModelSpec)[];

/** The model presets (tiny / small / base) from configs/presets.json. */
export function loadPresets(file = PRESETS_FILE): Record<string, ModelSpec> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new TrainConfigError(`cannot read model presets from ${file}`, { cause });
  }
  if (typeof raw !== 'object' || raw === null) throw new TrainConfigError(`${file}: expected an object of presets`);
  const out: Record<string, ModelSpec> = {};
  for (const [name, spec] of Object.entries(raw)) {
    const errors = checkModelSpec(spec, `${file}: ${name}`);
    if (errors.length > 0) throw new TrainConfigError(errors.join('; '));
    out[name] = spec as ModelSpec;
  }
  return out;
}

export function presetModel(name: string, file = PRESETS_FILE): ModelSpec {
  const presets = loadPresets(file);
  const spec = presets[name];
  if (spec === undefined)
    throw new TrainConfigError(`unknown preset ${JSON.stringify(name)} (known: ${Object.keys(presets).join(', ')})`);
  return { ...spec };
}

function checkModelSpec(spec: unknown, where: string): string[] {
  if (typeof spec !== 'object' || spec === null) return [`${where}: model must be an object`];
  const s = spec as Record<string, unknown>;
  const errors: string[] = [];
  for (const field of MODEL_FIELDS) {
    const v = s[field];
    const ok =
      field === 'dropout'
        ? typeof v === 'number' && v >= 0 && v < 1
        : typeof v === 'number' && Number.isInteger(v) && v > 0;
    if (!ok)
      errors.push(
        `${where}.${field}: ${field === 'dropout' ? 'must be in [0, 1)' : 'must be a positive integer'} (got ${JSON.stringify(v)})`,
      );
  }
  const cap = s['attentionLogitCap'];
  if (cap !== undefined && !(typeof cap === 'number' && Number.isFinite(cap) && cap >= 0))
    errors.push(`${where}.attentionLogitCap: must be a number >= 0, 0 for none (got ${JSON.stringify(cap)})`);
  const stride = s['sinusoidalStride'];
  if (stride !== undefined && !(typeof stride === 'number' && Number.isFinite(stride) && stride > 0))
    errors.push(
      `${where}.sinusoidalStride: must be a number > 0, 1 for the paper's table (got ${JSON.stringify(stride)})`,
    );
  if (errors.length === 0 && (s['dModel'] as number) % (s['heads'] as number) !== 0)
    errors.push(`${where}.dModel: must be divisible by heads`);
  return errors;
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
  evalSamples?: number;
  lengthTask?: TaskSpec;
  lengthSamples?: number;
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
    model: c.model ?? presetModel(preset),
    training: {
      steps,
      batchSize: c.batchSize ?? 64,
      learningRate: c.learningRate ?? 1e-3,
      warmupSteps: c.warmupSteps ?? Math.min(200, Math.floor(steps / 10)),
      weightDecay: c.weightDecay ?? 0.01,
      clipNorm: c.clipNorm ?? 1,
    },
    evaluation: {
      samples: c.evalSamples ?? 200,
      ...(c.lengthTask === undefined
        ? {}
        : { lengthTask: c.lengthTask, lengthSamples: c.lengthSamples ?? c.evalSamples ?? 200 }),
    },
    checkpointEvery: c.checkpointEvery ?? 500,
  };
  const errors = checkJobSpec(spec);
  if (errors.length > 0) throw new TrainConfigError(`invalid job: ${errors.join('; ')}`);
  return spec;
}
