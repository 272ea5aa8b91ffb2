// Experiment files: load, validate (errors name the file and the field), fill defaults, and compile once
// into an Experiment whose jobs (encodings x tasks x seeds) are plain JobSpecs, ready to journal and send.
import { ENCODINGS } from '../protocol/messages.ts';
import type {
  DataParallelSpec,
  EncodingName,
  EvaluationSpec,
  JobId,
  JobSpec,
  ModelSpec,
  RunId,
  TaskSpec,
  TrainingSpec,
} from '../protocol/messages.ts';
import { readJsonFile } from '../protocol/config-file.ts';
import { loadPresets, modelForEncoding } from '../protocol/presets.ts';
import { dataParallelProblems, describe } from '../protocol/validate.ts';
import { ExperimentConfigError } from './errors.ts';

export interface ClusterSpec {
  heartbeatIntervalMs: number;
  /** No message from an agent for this long: dead, its job is re-queued. */
  failureTimeoutMs: number;
  /** No message for this long: suspect (shown, nothing moved yet). */
  suspectAfterMs: number;
  /** A busy job whose step does not advance for this long is treated as lost (0 turns the watchdog off). */
  watchdogMs: number;
  checkpointEvery: number;
  maxAttempts: number;
  /** Acknowledged checkpoints kept per job. */
  keepCheckpoints: number;
}

export interface Experiment {
  name: string;
  /** Where it came from, for messages. */
  source: string;
  encodings: EncodingName[];
  tasks: TaskSpec[];
  seeds: number[];
  preset: string;
  model: ModelSpec;
  training: TrainingSpec;
  evaluation: EvaluationSpec;
  cluster: ClusterSpec;
  needs?: { backend?: string; gpu?: boolean };
  jobs: JobSpec[];
}

export const DEFAULT_CLUSTER: ClusterSpec = {
  heartbeatIntervalMs: 1000,
  failureTimeoutMs: 5000,
  suspectAfterMs: 2500,
  watchdogMs: 120_000,
  checkpointEvery: 100,
  maxAttempts: 4,
  keepCheckpoints: 3,
};

/** Held-out problems per operand length when evaluation.lengthRange gives none. */
const DEFAULT_PER_LENGTH = 500;

const DEFAULT_TRAINING: Omit<TrainingSpec, 'steps'> = {
  batchSize: 32,
  learningRate: 1e-3,
  warmupSteps: 0,
  weightDecay: 0.01,
  clipNorm: 1.0,
};

export async function loadExperiment(
  path: string,
  runId: RunId,
  presets: Record<string, ModelSpec> = loadPresets(),
  checks: TaskChecks = {},
): Promise<Experiment> {
  const raw = readJsonFile(path, ExperimentConfigError);
  return compileExperiment(raw, path, runId, presets, checks);
}

/**
 * Checks that need the workload's knowledge of tasks, injected by the CLI (the coordinator does not import the
 * data code): problems in a task's params (each "task.<field>: problem"), and the longest example in tokens.
 */
export interface TaskChecks {
  validate?: (task: TaskSpec) => string[];
  maxLength?: (task: TaskSpec) => number;
}

/** Validate and compile; `source` names the file in error messages. */
export function compileExperiment(
  raw: unknown,
  source: string,
  runId: RunId,
  presets: Record<string, ModelSpec> = loadPresets(),
  checks: TaskChecks = {},
): Experiment {
  const fail: Fail = (field, problem) => {
    throw new ExperimentConfigError(source, field, problem);
  };
  if (!isRecord(raw)) return fail('', 'must be a JSON object');
  const name = checkName(raw, fail);
  const encodings = checkEncodings(raw, fail);
  const tasks = checkTasks(raw, fail);
  const seeds = checkSeeds(raw, fail);
  const { preset, model } = checkModelChoice(raw, presets, source, fail);
  const training = checkTraining(raw, fail);
  const evaluation = checkEvaluation(raw, fail);
  const cluster = checkCluster(raw, fail);
  const needs = checkNeeds(raw, fail);
  rejectUnknownFields(raw, fail);
  checkTasksWithWorkload(tasks, evaluation, model, checks, fail);
  const experiment: Experiment = {
    name,
    source,
    encodings,
    tasks,
    seeds,
    preset,
    model,
    training,
    evaluation,
    cluster,
    jobs: [],
  };
  if (needs !== undefined) experiment.needs = needs;
  experiment.jobs = expandJobs(runId, experiment);
  return experiment;
}

/**
 * One job's evaluation section under the experiment file's rules, outside a file (`pe-arena train`): the same
 * defaults and checks (per-length sets need a task with operand lengths whose longest problem fits the model).
 * `fail` gets the experiment's field names ("evaluation.lengthRange"), for the caller to name its own flags.
 */
export function compileJobEvaluation(
  evalRaw: Record<string, unknown>,
  task: TaskSpec,
  model: ModelSpec,
  checks: TaskChecks,
  fail: Fail,
): EvaluationSpec {
  const evaluation = checkEvaluation({ evaluation: evalRaw }, fail);
  checkTasksWithWorkload([task], evaluation, model, checks, fail);
  return evaluation;
}

/** A preset with model overrides under the experiment file's rules (`pe-arena train --model key=value`). */
export function compileJobModel(
  preset: string,
  overrides: Record<string, unknown>,
  presets: Record<string, ModelSpec>,
  fail: Fail,
): ModelSpec {
  return checkModelChoice({ preset, model: overrides }, presets, '', fail).model;
}

/** Reports a field's problem and never returns (throws). */
export type Fail = (field: string, problem: string) => never;
type Needs = { backend?: string; gpu?: boolean };

const KNOWN_FIELDS = new Set([
  'name',
  'description',
  'encodings',
  'tasks',
  'seeds',
  'preset',
  'model',
  'training',
  'evaluation',
  'cluster',
  'needs',
]);

function checkName(raw: Record<string, unknown>, fail: Fail): string {
  const name = raw['name'];
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    return fail('name', 'must be a non-empty string of letters, digits, ".", "_" or "-"');
  }
  return name;
}

function checkEncodings(raw: Record<string, unknown>, fail: Fail): EncodingName[] {
  const encodingsRaw = raw['encodings'] ?? [...ENCODINGS];
  if (!Array.isArray(encodingsRaw) || encodingsRaw.length === 0) fail('encodings', 'must be a non-empty array');
  const encodings: EncodingName[] = [];
  (encodingsRaw as unknown[]).forEach((e, i) => {
    if (typeof e !== 'string' || !(ENCODINGS as readonly string[]).includes(e)) {
      fail(`encodings[${i}]`, `must be one of ${ENCODINGS.join(', ')} (got ${JSON.stringify(e)})`);
    }
    if (encodings.includes(e as EncodingName)) fail(`encodings[${i}]`, `repeats ${String(e)}`);
    encodings.push(e as EncodingName);
  });
  return encodings;
}

function checkTasks(raw: Record<string, unknown>, fail: Fail): TaskSpec[] {
  const tasksRaw = raw['tasks'];
  if (!Array.isArray(tasksRaw) || tasksRaw.length === 0) fail('tasks', 'must be a non-empty array of {name, params}');
  return (tasksRaw as unknown[]).map((t, i) => checkTask(t, `tasks[${i}]`, fail));
}

/** A count (seeds 1..n) or the seeds themselves. */
function checkSeeds(raw: Record<string, unknown>, fail: Fail): number[] {
  const seedsRaw = raw['seeds'] ?? 1;
  if (typeof seedsRaw === 'number') {
    if (!Number.isInteger(seedsRaw) || seedsRaw < 1)
      fail('seeds', 'must be a positive integer (a count) or an array of integers');
    return Array.from({ length: seedsRaw }, (_, i) => i + 1);
  }
  if (Array.isArray(seedsRaw) && seedsRaw.length > 0) {
    const seeds = seedsRaw.map((s, i) => {
      if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) fail(`seeds[${i}]`, 'must be a non-negative integer');
      return s as number;
    });
    if (new Set(seeds).size !== seeds.length) fail('seeds', 'must not repeat a seed');
    return seeds;
  }
  return fail('seeds', 'must be a positive integer (a count) or a non-empty array of integers');
}

/** The preset, with the experiment's model overrides on top. */
function checkModelChoice(
  raw: Record<string, unknown>,
  presets: Record<string, ModelSpec>,
  source: string,
  fail: Fail,
): { preset: string; model: ModelSpec } {
  const preset = raw['preset'] ?? 'tiny';
  if (typeof preset !== 'string') return fail('preset', 'must be a string');
  const base = presets[preset];
  if (base === undefined) return fail('preset', `must be one of ${Object.keys(presets).join(', ')} (got "${preset}")`);
  const overrides = raw['model'] ?? {};
  if (!isRecord(overrides)) return fail('model', 'must be an object of ModelSpec overrides');
  return { preset, model: checkModel({ ...base, ...overrides }, source, 'model', fail) };
}

function checkTraining(raw: Record<string, unknown>, fail: Fail): TrainingSpec {
  const trainingRaw = raw['training'];
  if (!isRecord(trainingRaw)) return fail('training', 'must be an object with at least "steps"');
  const training: TrainingSpec = {
    steps: int(trainingRaw['steps'], 'training.steps', 1, fail),
    batchSize: int(trainingRaw['batchSize'] ?? DEFAULT_TRAINING.batchSize, 'training.batchSize', 1, fail),
    learningRate: num(
      trainingRaw['learningRate'] ?? DEFAULT_TRAINING.learningRate,
      'training.learningRate',
      fail,
      true,
    ),
    warmupSteps: int(trainingRaw['warmupSteps'] ?? DEFAULT_TRAINING.warmupSteps, 'training.warmupSteps', 0, fail),
    weightDecay: num(trainingRaw['weightDecay'] ?? DEFAULT_TRAINING.weightDecay, 'training.weightDecay', fail, false),
    clipNorm: num(trainingRaw['clipNorm'] ?? DEFAULT_TRAINING.clipNorm, 'training.clipNorm', fail, false),
  };
  if (training.warmupSteps > training.steps) fail('training.warmupSteps', 'must not exceed training.steps');
  const dataParallel = trainingRaw['dataParallel'];
  if (dataParallel !== undefined) {
    const first = dataParallelProblems(dataParallel, training.batchSize)[0];
    if (first !== undefined) {
      const field = first.field === '' ? 'training.dataParallel' : `training.dataParallel.${first.field}`;
      fail(field, `must be ${first.expected} (got ${describe(first.got)})`);
    }
    const { ranks, minRanks, maxRanks } = dataParallel as DataParallelSpec;
    training.dataParallel = {
      ranks,
      ...(minRanks === undefined ? {} : { minRanks }),
      ...(maxRanks === undefined ? {} : { maxRanks }),
    };
  }
  return training;
}

function checkEvaluation(raw: Record<string, unknown>, fail: Fail): EvaluationSpec {
  const evalRaw = raw['evaluation'] ?? {};
  if (!isRecord(evalRaw)) return fail('evaluation', 'must be an object');
  const evaluation: EvaluationSpec = { samples: int(evalRaw['samples'] ?? 200, 'evaluation.samples', 1, fail) };
  if (evalRaw['lengthTask'] !== undefined) {
    evaluation.lengthTask = checkTask(evalRaw['lengthTask'], 'evaluation.lengthTask', fail);
    evaluation.lengthSamples = int(evalRaw['lengthSamples'] ?? evaluation.samples, 'evaluation.lengthSamples', 1, fail);
  } else if (evalRaw['lengthSamples'] !== undefined) {
    fail('evaluation.lengthSamples', 'needs evaluation.lengthTask');
  }
  checkLengthRange(evalRaw, evaluation, fail);
  return evaluation;
}

/** Per-length test sets: lengthRange [from, to] of operand digits, perLength problems each (default 500). */
function checkLengthRange(evalRaw: Record<string, unknown>, evaluation: EvaluationSpec, fail: Fail): void {
  const range = evalRaw['lengthRange'];
  if (range === undefined) {
    if (evalRaw['perLength'] !== undefined) fail('evaluation.perLength', 'needs evaluation.lengthRange');
    return;
  }
  if (!Array.isArray(range) || range.length !== 2)
    fail('evaluation.lengthRange', 'must be [from, to]: the shortest and longest operand length, e.g. [1, 12]');
  const from = int((range as unknown[])[0], 'evaluation.lengthRange[0]', 1, fail);
  const to = int((range as unknown[])[1], 'evaluation.lengthRange[1]', from, fail);
  if (evaluation.lengthTask !== undefined)
    fail('evaluation.lengthRange', 'is a second length-generalization set beside lengthTask: use one of the two');
  evaluation.lengthRange = [from, to];
  evaluation.perLength = int(evalRaw['perLength'] ?? DEFAULT_PER_LENGTH, 'evaluation.perLength', 1, fail);
}

function checkCluster(raw: Record<string, unknown>, fail: Fail): ClusterSpec {
  const clusterRaw = raw['cluster'] ?? {};
  if (!isRecord(clusterRaw)) return fail('cluster', 'must be an object');
  const c = (key: keyof ClusterSpec, min: number): number =>
    int(clusterRaw[key] ?? DEFAULT_CLUSTER[key], `cluster.${key}`, min, fail);
  const heartbeatIntervalMs = c('heartbeatIntervalMs', 10);
  const failureTimeoutMs = c('failureTimeoutMs', 1);
  const cluster: ClusterSpec = {
    heartbeatIntervalMs,
    failureTimeoutMs,
    suspectAfterMs: int(
      clusterRaw['suspectAfterMs'] ?? Math.max(heartbeatIntervalMs * 2, Math.round(failureTimeoutMs / 2)),
      'cluster.suspectAfterMs',
      1,
      fail,
    ),
    watchdogMs: c('watchdogMs', 0),
    checkpointEvery: c('checkpointEvery', 1),
    maxAttempts: c('maxAttempts', 1),
    keepCheckpoints: c('keepCheckpoints', 1),
  };
  if (failureTimeoutMs <= heartbeatIntervalMs)
    fail('cluster.failureTimeoutMs', `must be larger than cluster.heartbeatIntervalMs (${heartbeatIntervalMs})`);
  if (cluster.suspectAfterMs >= failureTimeoutMs)
    fail('cluster.suspectAfterMs', `must be smaller than cluster.failureTimeoutMs (${failureTimeoutMs})`);
  return cluster;
}

function checkNeeds(raw: Record<string, unknown>, fail: Fail): Needs | undefined {
  const needsRaw = raw['needs'];
  if (needsRaw === undefined) return undefined;
  if (!isRecord(needsRaw)) return fail('needs', 'must be an object like {"backend": "tensorflow-gpu", "gpu": true}');
  const needs: Needs = {};
  if (needsRaw['backend'] !== undefined) {
    if (typeof needsRaw['backend'] !== 'string') fail('needs.backend', 'must be a string');
    needs.backend = needsRaw['backend'] as string;
  }
  if (needsRaw['gpu'] !== undefined) {
    if (typeof needsRaw['gpu'] !== 'boolean') fail('needs.gpu', 'must be true or false');
    needs.gpu = needsRaw['gpu'] as boolean;
  }
  return needs;
}

function rejectUnknownFields(raw: Record<string, unknown>, fail: Fail): void {
  for (const key of Object.keys(raw))
    if (!KNOWN_FIELDS.has(key)) fail(key, `is not a known field (known: ${[...KNOWN_FIELDS].join(', ')})`);
}

/** The workload's own checks (injected): each task's params, and whether its longest example fits model.maxLen. */
function checkTasksWithWorkload(
  tasks: TaskSpec[],
  evaluation: EvaluationSpec,
  model: ModelSpec,
  checks: TaskChecks,
  fail: Fail,
): void {
  const checkTaskDeep = (task: TaskSpec, field: string): void => {
    const problems = checks.validate?.(task) ?? [];
    const first = problems[0];
    if (first !== undefined) {
      const m = /^task(\.[^:]*)?:\s*(.*)$/.exec(first);
      fail(m ? `${field}${m[1] ?? ''}` : field, m ? (m[2] ?? first) : first);
    }
    if (checks.maxLength) {
      // +2 for the begin and end tokens around prompt and target.
      const need = checks.maxLength(task) + 2;
      if (need > model.maxLen)
        fail(
          'model.maxLen',
          `is ${model.maxLen}, too short for ${field} (${task.name}: examples need up to ${need} tokens)`,
        );
    }
  };
  tasks.forEach((t, i) => checkTaskDeep(t, `tasks[${i}]`));
  if (evaluation.lengthTask) checkTaskDeep(evaluation.lengthTask, 'evaluation.lengthTask');
  const longest = evaluation.lengthRange?.[1];
  if (longest === undefined) return;
  tasks.forEach((t, i) => {
    if (t.name !== 'addition' && t.name !== 'multiplication')
      fail(
        'evaluation.lengthRange',
        `needs tasks with operand lengths (addition, multiplication); tasks[${i}] is ${t.name}`,
      );
    // The longest test problems, in the task's own format, must be valid and fit the model.
    checkTaskDeep({ ...t, params: { ...t.params, minDigits: longest, maxDigits: longest } }, 'evaluation.lengthRange');
  });
}

/** encodings x tasks x seeds, one JobSpec each. */
function expandJobs(runId: RunId, e: Omit<Experiment, 'jobs'>): JobSpec[] {
  // Two tasks with the same name (different params) get an index so jobIds stay unique.
  const taskNames = e.tasks.map((t) => t.name);
  const taskKey = (t: TaskSpec, i: number): string =>
    taskNames.filter((n) => n === t.name).length > 1 ? `${safe(t.name)}${i + 1}` : safe(t.name);
  const jobs: JobSpec[] = [];
  for (const encoding of e.encodings) {
    e.tasks.forEach((task, ti) => {
      for (const seed of e.seeds) {
        const job: JobSpec = {
          jobId: `${encoding}-${taskKey(task, ti)}-s${seed}` as JobId,
          runId,
          encoding,
          task,
          seed,
          preset: e.preset,
          model: modelForEncoding(encoding, e.model),
          training: e.training,
          evaluation: e.evaluation,
          checkpointEvery: e.cluster.checkpointEvery,
        };
        if (e.needs !== undefined) job.needs = e.needs;
        jobs.push(job);
      }
    });
  }
  return jobs;
}

/** "rope-addition-s1" -> "rope/addition/s1", for people. */
export function displayJobId(jobId: string): string {
  const m = /^([a-z0-9]+)-(.+)-s(\d+)$/.exec(jobId);
  return m ? `${m[1]}/${m[2]}/s${m[3]}` : jobId;
}

function checkTask(t: unknown, field: string, fail: Fail): TaskSpec {
  if (!isRecord(t)) return fail(field, 'must be an object {name, params}');
  const name = t['name'];
  if (typeof name !== 'string' || !/^[a-z][a-z0-9_]*$/.test(name))
    fail(`${field}.name`, 'must be a lower-case task name like "addition"');
  const params = t['params'] ?? {};
  if (!isRecord(params)) return fail(`${field}.params`, 'must be an object');
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(params)) {
    if (typeof v !== 'number' && typeof v !== 'string' && typeof v !== 'boolean')
      fail(`${field}.params.${k}`, 'must be a number, string or boolean');
    if (typeof v === 'number' && !Number.isFinite(v)) fail(`${field}.params.${k}`, 'must be a finite number');
    out[k] = v as number | string | boolean;
  }
  return { name: name as string, params: out };
}

function checkModel(m: Record<string, unknown>, source: string, field: string, failOr: Fail | undefined): ModelSpec {
  const fail: Fail =
    failOr ??
    ((f, p) => {
      throw new ExperimentConfigError(source, f, p);
    });
  const model: ModelSpec = {
    layers: int(m['layers'], `${field}.layers`, 1, fail),
    dModel: int(m['dModel'], `${field}.dModel`, 1, fail),
    heads: int(m['heads'], `${field}.heads`, 1, fail),
    ffnDim: int(m['ffnDim'], `${field}.ffnDim`, 1, fail),
    dropout: num(m['dropout'], `${field}.dropout`, fail, false),
    maxLen: int(m['maxLen'], `${field}.maxLen`, 2, fail),
    ...(m['attentionLogitCap'] === undefined
      ? {}
      : { attentionLogitCap: num(m['attentionLogitCap'], `${field}.attentionLogitCap`, fail, false) }),
    ...(m['sinusoidalStride'] === undefined
      ? {}
      : { sinusoidalStride: num(m['sinusoidalStride'], `${field}.sinusoidalStride`, fail, true) }),
    // MAPE's ablations (the other encodings ignore them).
    ...(m['mapeMaxOffset'] === undefined
      ? {}
      : { mapeMaxOffset: int(m['mapeMaxOffset'], `${field}.mapeMaxOffset`, 0, fail) }),
    ...(m['mapeOffset'] === undefined ? {} : { mapeOffset: flag(m['mapeOffset'], `${field}.mapeOffset`, fail) }),
    ...(m['mapeRoles'] === undefined ? {} : { mapeRoles: flag(m['mapeRoles'], `${field}.mapeRoles`, fail) }),
    ...(m['mapeRelative'] === undefined
      ? {}
      : { mapeRelative: flag(m['mapeRelative'], `${field}.mapeRelative`, fail) }),
  };
  if (model.dModel % model.heads !== 0) fail(`${field}.dModel`, `must be divisible by ${field}.heads (${model.heads})`);
  if (model.dropout >= 1) fail(`${field}.dropout`, 'must be below 1');
  const known = new Set(Object.keys(model));
  for (const key of Object.keys(m)) if (!known.has(key)) fail(`${field}.${key}`, 'is not a model field');
  return model;
}

function int(v: unknown, field: string, min: number, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    fail(field, min === 1 ? 'must be a positive integer' : `must be an integer >= ${min}`);
  }
  return v as number;
}

function flag(v: unknown, field: string, fail: Fail): boolean {
  if (typeof v !== 'boolean') fail(field, 'must be true or false');
  return v as boolean;
}

function num(v: unknown, field: string, fail: Fail, positive: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (positive && v === 0)) {
    fail(field, positive ? 'must be a positive number' : 'must be a non-negative number');
  }
  return v as number;
}

function safe(s: string): string {
  return s.replace(/[^a-z0-9]+/g, '_');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
