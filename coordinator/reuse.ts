// `pe-arena run <experiment> --reuse <runDir>`: a new run takes over the finished jobs of an earlier one whose job is
// exactly the same (encoding, task, seed, model, training, evaluation, checkpoint cadence: the whole job spec but the
// run id) and trains only the rest. Changing one arm of an experiment (a MAPE option, an added encoding) then costs
// that arm's jobs, not the whole experiment. The reused job's results (evaluation.json, metrics.jsonl, the final
// model, its TensorBoard events) are copied into the new run directory, and the journal says where each came from.
import { cpSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JobId, JobSpec } from '../protocol/messages.ts';
import { RunDirectoryError } from './errors.ts';
import type { Experiment } from './experiment.ts';
import { readJournal, replay } from './journal.ts';

export interface ReusedJob {
  jobId: JobId;
  /** The run the results come from. */
  fromRun: string;
}

/** What of a job's directory a later run needs: results and the final model, not the training checkpoints. */
const JOB_FILES = ['evaluation.json', 'metrics.jsonl', 'final_model'];

/** A job spec as a canonical string without its run id: equal strings, the same training and evaluation. */
export function jobKey(spec: JobSpec): string {
  const { runId: _runId, ...rest } = spec;
  return canonical(rest);
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The jobs of `experiment` that `fromDir` finished with the same spec, and why each other one of its jobs was not. */
export function reusableJobs(
  experiment: Experiment,
  fromDir: string,
): { reused: ReusedJob[]; skipped: { jobId: JobId; why: string }[] } {
  const dir = resolve(fromDir);
  const expFile = join(dir, 'experiment.json');
  if (!existsSync(expFile)) throw new RunDirectoryError(`--reuse ${fromDir}: not a run directory (no experiment.json)`);
  let old: Experiment;
  try {
    old = JSON.parse(readFileSync(expFile, 'utf8')) as Experiment;
  } catch (error) {
    throw new RunDirectoryError(`--reuse ${fromDir}: experiment.json is not JSON: ${(error as Error).message}`);
  }
  const journal = replay(readJournal(join(dir, 'journal.jsonl')));
  const oldSpecs = new Map((old.jobs ?? []).map((j) => [j.jobId, j]));
  const reused: ReusedJob[] = [];
  const skipped: { jobId: JobId; why: string }[] = [];
  for (const job of experiment.jobs) {
    const before = oldSpecs.get(job.jobId);
    if (before === undefined) continue;
    const why =
      journal.jobs.get(job.jobId)?.state !== 'done'
        ? 'it did not finish there'
        : !existsSync(join(dir, 'jobs', job.jobId, 'evaluation.json'))
          ? 'its evaluation.json is missing'
          : jobKey(before) !== jobKey(job)
            ? 'its job differs (model, training or evaluation)'
            : undefined;
    if (why === undefined) reused.push({ jobId: job.jobId, fromRun: journal.runId });
    else skipped.push({ jobId: job.jobId, why });
  }
  return { reused, skipped };
}

/** Copies each reused job's results from `fromDir` into `runDir` (jobs/<jobId>/ and tensorboard/<jobId>/). */
export function copyReusedJobs(fromDir: string, runDir: string, jobs: readonly ReusedJob[]): void {
  const from = resolve(fromDir);
  for (const { jobId } of jobs) {
    for (const name of JOB_FILES) {
      const src = join(from, 'jobs', jobId, name);
      if (existsSync(src)) cpSync(src, join(runDir, 'jobs', jobId, name), { recursive: true });
    }
    const events = join(from, 'tensorboard', jobId);
    if (existsSync(events) && readdirSync(events).length > 0)
      cpSync(events, join(runDir, 'tensorboard', jobId), { recursive: true });
  }
}
