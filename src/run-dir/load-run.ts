// Reads what a run left on disk: experiment.json, journal.jsonl, jobs/<jobId>/{evaluation.json, metrics.jsonl,
// final_model/}. Also reads a `pe-arena train --out` directory (job.json and evaluation.json at its root) as a
// run of one job. Nothing here throws on a bad file: each problem is recorded with its path and the report says
// what is missing, so a run with failed or broken jobs still gets a report.
// Its own folder because both src/report (results) and src/serve (models) read runs: so serve need not import report.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Evaluation, JobSpec, MetricPoint } from '../../protocol/messages.ts';
import { RunDirectoryError } from './errors.ts';

export type JobState = 'done' | 'failed' | 'missing';

export interface JobRecord {
  jobId: string;
  encoding: string;
  /** The task's name (Evaluation.task). */
  task: string;
  seed: number;
  state: JobState;
  spec?: JobSpec;
  evaluation?: Evaluation;
  metrics: MetricPoint[];
  /** The final model blob (or, failing that, the newest checkpoint), when one is on disk. */
  modelFile?: string;
  /** Why the job has no evaluation, when known (journal's job_failed, or a broken file). */
  reason?: string;
  /** The run that trained it, when this run took its results over (`pe-arena run --reuse`). */
  reusedFrom?: string;
}

export interface ExperimentInfo {
  name: string;
  description?: string;
  encodings: string[];
  tasks: JobSpec['task'][];
  seeds: number[];
  preset: string;
  model?: JobSpec['model'];
  training?: JobSpec['training'];
  evaluation?: JobSpec['evaluation'];
}

export interface RunData {
  runDir: string;
  runId: string;
  layout: 'run' | 'train-out';
  experiment: ExperimentInfo;
  jobs: JobRecord[];
  /** Files that could not be read or did not validate, with the reason. */
  warnings: string[];
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Validates an evaluation.json; throws a RunDirectoryError naming the file and field. */
export function parseEvaluation(raw: unknown, where: string): Evaluation {
  const fail = (field: string, what: string): never => {
    throw new RunDirectoryError(`${where}: ${field} ${what}`);
  };
  if (!isRecord(raw)) return fail('(root)', 'is not an object');
  for (const k of ['jobId', 'encoding', 'task', 'backend'] as const)
    if (typeof raw[k] !== 'string') fail(k, 'is not a string');
  for (const k of [
    'seed',
    'steps',
    'wallTimeS',
    'parameters',
    'tokensPerSecond',
    'exactMatch',
    'symbolicAccuracy',
  ] as const) {
    if (!isNum(raw[k])) fail(k, 'is not a finite number');
  }
  if (raw['stepAccuracy'] !== null && !isNum(raw['stepAccuracy'])) fail('stepAccuracy', 'is neither a number nor null');
  if (!isRecord(raw['perLength'])) fail('perLength', 'is not an object');
  for (const [k, b] of Object.entries(raw['perLength'] as Record<string, unknown>)) {
    if (!isRecord(b) || !isNum(b['n']) || !isNum(b['exactMatch'])) fail(`perLength.${k}`, 'is not {n, exactMatch}');
  }
  const ent = raw['attentionEntropy'];
  if (!Array.isArray(ent) || !ent.every((row) => Array.isArray(row) && row.every(isNum)))
    fail('attentionEntropy', 'is not a [layer][head] table of numbers');
  if (!isRecord(raw['errorTaxonomy']) || !Object.values(raw['errorTaxonomy']).every(isNum))
    fail('errorTaxonomy', 'is not a table of counts');
  if (!Array.isArray(raw['problems'])) fail('problems', 'is not a list');
  (raw['problems'] as unknown[]).forEach((p, i) => {
    if (!isRecord(p)) return fail(`problems[${i}]`, 'is not an object');
    if (
      typeof p['id'] !== 'string' ||
      typeof p['split'] !== 'string' ||
      typeof p['prediction'] !== 'string' ||
      typeof p['target'] !== 'string'
    ) {
      fail(`problems[${i}]`, 'lacks id, split, prediction or target strings');
    }
    if (!isNum(p['length']) || typeof p['correct'] !== 'boolean' || typeof p['symbolic'] !== 'boolean')
      fail(`problems[${i}]`, 'lacks length, correct or symbolic');
  });
  return raw as unknown as Evaluation;
}

/** metrics.jsonl: one MetricPoint per line; bad lines are skipped and counted. */
export function readMetrics(file: string): { points: MetricPoint[]; bad: number } {
  const points: MetricPoint[] = [];
  let bad = 0;
  if (!existsSync(file)) return { points, bad };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const p: unknown = JSON.parse(line);
      if (isRecord(p) && isNum(p['step']) && isNum(p['loss'])) points.push(p as unknown as MetricPoint);
      else bad++;
    } catch {
      bad++;
    }
  }
  // A resumed job repeats steps after its checkpoint: keep the latest value of each step.
  const byStep = new Map<number, MetricPoint>();
  for (const p of points) byStep.set(p.step, p);
  return { points: [...byStep.values()].sort((a, b) => a.step - b.step), bad };
}

/** The model blob of a job directory: final_model/* first, else the newest checkpoint. */
export function findModelFile(jobDir: string): string | undefined {
  const finalDir = join(jobDir, 'final_model');
  if (existsSync(finalDir)) {
    const files = readdirSync(finalDir).filter((f) => !f.endsWith('.json') && !f.includes('.tmp'));
    const preferred = ['model.bin', 'model.ckpt'].find((f) => files.includes(f)) ?? files.sort()[0];
    if (preferred !== undefined) return join(finalDir, preferred);
  }
  const ckptDir = join(jobDir, 'checkpoints');
  if (existsSync(ckptDir)) {
    // Checkpoint names carry a zero-padded step, so the last in sort order is the newest.
    const files = readdirSync(ckptDir)
      .filter((f) => f.endsWith('.ckpt'))
      .sort();
    const last = files[files.length - 1];
    if (last !== undefined) return join(ckptDir, last);
  }
  return undefined;
}

function experimentInfo(
  raw: unknown,
  where: string,
  warnings: string[],
): { info: ExperimentInfo; specs: JobSpec[] } | null {
  if (!isRecord(raw)) {
    warnings.push(`${where}: not an object`);
    return null;
  }
  const specs = Array.isArray(raw['jobs'])
    ? (raw['jobs'] as unknown[]).filter(
        (j): j is JobSpec => isRecord(j) && typeof j['jobId'] === 'string' && typeof j['encoding'] === 'string',
      )
    : [];
  const info: ExperimentInfo = {
    name: typeof raw['name'] === 'string' ? raw['name'] : basename(where),
    encodings: Array.isArray(raw['encodings'])
      ? raw['encodings'].filter((e): e is string => typeof e === 'string')
      : [...new Set(specs.map((s) => s.encoding))],
    tasks: Array.isArray(raw['tasks']) ? (raw['tasks'] as JobSpec['task'][]) : [],
    seeds: Array.isArray(raw['seeds']) ? raw['seeds'].filter(isNum) : [...new Set(specs.map((s) => s.seed))],
    preset: typeof raw['preset'] === 'string' ? raw['preset'] : 'unknown',
  };
  if (typeof raw['description'] === 'string') info.description = raw['description'];
  if (isRecord(raw['model'])) info.model = raw['model'] as unknown as JobSpec['model'];
  if (isRecord(raw['training'])) info.training = raw['training'] as unknown as JobSpec['training'];
  if (isRecord(raw['evaluation'])) info.evaluation = raw['evaluation'] as unknown as JobSpec['evaluation'];
  return { info, specs };
}

function journalFailures(file: string): {
  runId?: string;
  failed: Map<string, string>;
  reused: Map<string, string>;
} {
  const failed = new Map<string, string>();
  const reused = new Map<string, string>();
  let runId: string | undefined;
  if (!existsSync(file)) return { failed, reused };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      continue; // A torn last line; the journal's own reader decides what a bad middle line means.
    }
    if (!isRecord(e)) continue;
    if (e['type'] === 'run_started' && typeof e['runId'] === 'string') runId = e['runId'];
    if (e['type'] === 'job_failed' && typeof e['jobId'] === 'string') {
      const err = isRecord(e['error']) ? e['error'] : {};
      failed.set(e['jobId'], `${String(err['name'] ?? 'Error')}: ${String(err['message'] ?? 'failed')}`);
    }
    if (e['type'] === 'job_done' && typeof e['jobId'] === 'string') failed.delete(e['jobId']);
    if (e['type'] === 'job_reused' && typeof e['jobId'] === 'string' && typeof e['fromRun'] === 'string')
      reused.set(e['jobId'], e['fromRun']);
  }
  return runId === undefined ? { failed, reused } : { runId, failed, reused };
}

function loadEvaluation(file: string, warnings: string[]): Evaluation | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return parseEvaluation(readJson(file), file);
  } catch (error) {
    warnings.push(
      error instanceof RunDirectoryError
        ? error.message
        : `${file}: ${error instanceof Error ? error.message : String(error)}`,
    );
    return undefined;
  }
}

function jobRecord(
  jobDir: string,
  base: { jobId: string; encoding: string; task: string; seed: number; spec?: JobSpec },
  failure: string | undefined,
  warnings: string[],
): JobRecord {
  const evaluation = loadEvaluation(join(jobDir, 'evaluation.json'), warnings);
  const { points, bad } = readMetrics(join(jobDir, 'metrics.jsonl'));
  if (bad > 0) warnings.push(`${join(jobDir, 'metrics.jsonl')}: ${bad} unreadable line(s) skipped`);
  const record: JobRecord = {
    jobId: base.jobId,
    encoding: evaluation?.encoding ?? base.encoding,
    task: evaluation?.task ?? base.task,
    seed: evaluation?.seed ?? base.seed,
    state: evaluation !== undefined ? 'done' : failure !== undefined ? 'failed' : 'missing',
    metrics: points,
  };
  if (base.spec !== undefined) record.spec = base.spec;
  if (evaluation !== undefined) record.evaluation = evaluation;
  const modelFile = existsSync(jobDir) ? findModelFile(jobDir) : undefined;
  if (modelFile !== undefined) record.modelFile = modelFile;
  if (evaluation === undefined)
    record.reason =
      failure ?? (existsSync(join(jobDir, 'evaluation.json')) ? 'evaluation.json is invalid' : 'no evaluation.json');
  return record;
}

/** Reads a run directory; throws RunDirectoryError only when the directory is not a run at all. */
export function loadRun(runDir: string): RunData {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory())
    throw new RunDirectoryError(`${runDir} is not a directory`);
  const warnings: string[] = [];
  const expFile = join(runDir, 'experiment.json');
  const jobFile = join(runDir, 'job.json');
  if (existsSync(expFile) || existsSync(join(runDir, 'jobs'))) {
    let parsed: { info: ExperimentInfo; specs: JobSpec[] } | null = null;
    if (existsSync(expFile)) {
      try {
        parsed = experimentInfo(readJson(expFile), expFile, warnings);
      } catch (error) {
        warnings.push(`${expFile}: ${error instanceof Error ? error.message : String(error)}`);
      }
    } else warnings.push(`${expFile} is missing: jobs are taken from jobs/`);
    const { runId, failed, reused } = journalFailures(join(runDir, 'journal.jsonl'));
    const jobsDir = join(runDir, 'jobs');
    const onDisk = existsSync(jobsDir)
      ? readdirSync(jobsDir).filter((d) => statSync(join(jobsDir, d)).isDirectory())
      : [];
    const specs = parsed?.specs ?? [];
    const ids = [...specs.map((s) => s.jobId as string), ...onDisk.filter((d) => !specs.some((s) => s.jobId === d))];
    const jobs = ids.map((jobId) => {
      const spec = specs.find((s) => s.jobId === jobId);
      const base =
        spec !== undefined
          ? { jobId, encoding: spec.encoding, task: spec.task.name, seed: spec.seed, spec }
          : { jobId, encoding: 'unknown', task: 'unknown', seed: 0 };
      const record = jobRecord(join(jobsDir, jobId), base, failed.get(jobId), warnings);
      const from = reused.get(jobId);
      if (from !== undefined) record.reusedFrom = from;
      return record;
    });
    const info: ExperimentInfo = parsed?.info ?? {
      name: basename(runDir),
      encodings: [...new Set(jobs.map((j) => j.encoding))],
      tasks: [],
      seeds: [...new Set(jobs.map((j) => j.seed))],
      preset: 'unknown',
    };
    return {
      runDir,
      runId: runId ?? specs[0]?.runId ?? basename(runDir),
      layout: 'run',
      experiment: info,
      jobs,
      warnings,
    };
  }
  if (existsSync(jobFile) || existsSync(join(runDir, 'evaluation.json'))) {
    let spec: JobSpec | undefined;
    try {
      const raw = readJson(jobFile);
      if (isRecord(raw) && typeof raw['jobId'] === 'string') spec = raw as unknown as JobSpec;
    } catch (error) {
      warnings.push(`${jobFile}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const base =
      spec !== undefined
        ? { jobId: spec.jobId as string, encoding: spec.encoding, task: spec.task.name, seed: spec.seed, spec }
        : { jobId: basename(runDir), encoding: 'unknown', task: 'unknown', seed: 0 };
    const job = jobRecord(runDir, base, undefined, warnings);
    const info: ExperimentInfo = {
      name: `train ${job.encoding} on ${job.task}`,
      encodings: [job.encoding],
      tasks: spec ? [spec.task] : [],
      seeds: [job.seed],
      preset: spec?.preset ?? 'unknown',
    };
    if (spec !== undefined) {
      info.model = spec.model;
      info.training = spec.training;
      info.evaluation = spec.evaluation;
    }
    return { runDir, runId: basename(runDir), layout: 'train-out', experiment: info, jobs: [job], warnings };
  }
  throw new RunDirectoryError(
    `${runDir} is not a run directory: no experiment.json, jobs/, job.json or evaluation.json in it`,
  );
}
