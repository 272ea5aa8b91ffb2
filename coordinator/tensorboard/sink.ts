// A run's TensorBoard view: runs/<runId>/tensorboard/<jobId>/events.out.tfevents.<time>.<host>, one directory per
// job, the training scalars per step and the evaluation at the end. Written live by the metrics sink, or afterwards
// from metrics.jsonl by `pe-arena export tensorboard`. A job that resumes (a new attempt, or a restarted coordinator)
// appends to a new file and skips the steps its directory already holds, so no step appears twice.
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Evaluation, MetricPoint } from '../../protocol/messages.ts';
import { RunDirectoryError } from '../errors.ts';
import { EventFileWriter, readEventFile, type Scalar } from './event-file.ts';

export const TENSORBOARD_DIR = 'tensorboard';

export function trainingScalars(point: MetricPoint): Scalar[] {
  const scalars: Scalar[] = [
    { tag: 'train/loss', value: point.loss },
    { tag: 'train/learning_rate', value: point.learningRate },
    { tag: 'train/grad_norm', value: point.gradNorm },
    { tag: 'train/tokens_per_second', value: point.tokensPerSecond },
  ];
  if (point.accuracy !== undefined) scalars.push({ tag: 'train/answer_accuracy', value: point.accuracy });
  return scalars;
}

export function evaluationScalars(evaluation: Evaluation): Scalar[] {
  const scalars: Scalar[] = [
    { tag: 'eval/exact_match', value: evaluation.exactMatch },
    { tag: 'eval/symbolic_accuracy', value: evaluation.symbolicAccuracy },
  ];
  if (evaluation.stepAccuracy !== null) scalars.push({ tag: 'eval/step_accuracy', value: evaluation.stepAccuracy });
  const lengths = Object.keys(evaluation.perLength).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  for (const length of lengths) {
    const bucket = evaluation.perLength[length];
    if (bucket !== undefined) scalars.push({ tag: `eval/exact_match_length_${length}`, value: bucket.exactMatch });
  }
  return scalars;
}

export interface WrittenSoFar {
  /** The highest training step any event file in the directory holds (0 when there is none). */
  readonly lastStep: number;
  readonly hasEvaluation: boolean;
}

/** What a job's TensorBoard directory holds already; torn tails are ignored. */
export function writtenSoFar(dir: string): WrittenSoFar {
  let lastStep = 0;
  let hasEvaluation = false;
  if (!existsSync(dir)) return { lastStep, hasEvaluation };
  for (const name of readdirSync(dir)) {
    if (!name.startsWith('events.out.tfevents.')) continue;
    for (const event of readEventFile(join(dir, name))) {
      for (const scalar of event.scalars ?? []) {
        if (scalar.tag.startsWith('train/')) lastStep = Math.max(lastStep, event.step);
        else if (scalar.tag.startsWith('eval/')) hasEvaluation = true;
      }
    }
  }
  return { lastStep, hasEvaluation };
}

interface JobWriter {
  readonly writer: EventFileWriter;
  /** Steps at or below this are in the directory already (a resumed job repeats some). */
  lastStep: number;
}

export class TensorBoardSink {
  private readonly jobs = new Map<string, JobWriter>();
  private readonly host = hostname();

  constructor(
    private readonly runDir: string,
    private readonly now: () => number = Date.now,
  ) {}

  writeMetrics(jobId: string, points: readonly MetricPoint[]): void {
    const job = this.job(jobId);
    for (const point of points) {
      if (point.step <= job.lastStep) continue;
      job.writer.add({ wallTime: point.time / 1000, step: point.step, scalars: trainingScalars(point) });
      job.lastStep = point.step;
    }
  }

  writeEvaluation(jobId: string, evaluation: Evaluation): void {
    const job = this.job(jobId);
    job.writer.add({ wallTime: this.now() / 1000, step: evaluation.steps, scalars: evaluationScalars(evaluation) });
    job.writer.flush();
  }

  flush(): void {
    for (const job of this.jobs.values()) job.writer.flush();
  }

  close(): void {
    for (const job of this.jobs.values()) job.writer.close();
    this.jobs.clear();
  }

  private job(jobId: string): JobWriter {
    let job = this.jobs.get(jobId);
    if (job === undefined) {
      const dir = join(this.runDir, TENSORBOARD_DIR, jobId);
      mkdirSync(dir, { recursive: true });
      const { lastStep } = writtenSoFar(dir);
      // TensorBoard orders files by name; the writer's pid keeps two writers of one second apart.
      const file = join(dir, `events.out.tfevents.${Math.floor(this.now() / 1000)}.${this.host}.${process.pid}`);
      job = { writer: new EventFileWriter(file, this.now() / 1000), lastStep };
      this.jobs.set(jobId, job);
    }
    return job;
  }
}

export interface ExportSummary {
  readonly jobs: number;
  readonly steps: number;
  readonly evaluations: number;
}

/**
 * Writes the TensorBoard files of a finished (or older) run from its jobs/<jobId>/metrics.jsonl and
 * evaluation.json. Run again, it adds nothing: every job's directory already holds its steps.
 */
export function exportTensorBoard(runDir: string, now: () => number = Date.now): ExportSummary {
  const jobsDir = join(runDir, 'jobs');
  if (!existsSync(jobsDir)) throw new RunDirectoryError(`${runDir}: no jobs/ directory (is it a run directory?)`);
  const sink = new TensorBoardSink(runDir, now);
  let jobs = 0;
  let steps = 0;
  let evaluations = 0;
  try {
    for (const jobId of readdirSync(jobsDir).sort()) {
      const points = readMetricPoints(join(jobsDir, jobId, 'metrics.jsonl'));
      const evaluationFile = join(jobsDir, jobId, 'evaluation.json');
      const dir = join(runDir, TENSORBOARD_DIR, jobId);
      const already = writtenSoFar(dir);
      const fresh = points.filter((p) => p.step > already.lastStep);
      const hasEvaluation = existsSync(evaluationFile) && !already.hasEvaluation;
      if (fresh.length === 0 && !hasEvaluation) continue;
      jobs++;
      sink.writeMetrics(jobId, fresh);
      steps += fresh.length;
      if (hasEvaluation) {
        sink.writeEvaluation(jobId, JSON.parse(readFileSync(evaluationFile, 'utf8')) as Evaluation);
        evaluations++;
      }
    }
  } finally {
    sink.close();
  }
  return { jobs, steps, evaluations };
}

/** metrics.jsonl's points in step order, the last attempt's value for a step written twice; bad lines skipped. */
function readMetricPoints(file: string): MetricPoint[] {
  if (!existsSync(file)) return [];
  const byStep = new Map<number, MetricPoint>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const point = JSON.parse(line) as MetricPoint;
      if (Number.isFinite(point.step) && Number.isFinite(point.loss)) byStep.set(point.step, point);
    } catch {
      // A torn last line of a crashed writer: the other lines still count.
    }
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}
