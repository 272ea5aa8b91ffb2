// A light snapshot of a run in progress, for the demo's live view (server-sent events): job states from the
// journal, the last step and loss from the tail of each metrics.jsonl. Reads only small parts of big files.
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface JobProgress {
  jobId: string;
  encoding: string;
  task: string;
  seed: number;
  state: 'pending' | 'assigned' | 'running' | 'evaluating' | 'done' | 'failed';
  step: number;
  totalSteps: number;
  loss?: number;
  tokensPerSecond?: number;
  error?: string;
}

export interface RunProgress {
  runId: string;
  time: number;
  finished: boolean;
  jobs: JobProgress[];
}

const TAIL_BYTES = 4096;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

function tail(file: string, bytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function lastMetric(file: string): { step: number; loss: number; tokensPerSecond?: number } | undefined {
  if (!existsSync(file)) return undefined;
  const lines = tail(file, TAIL_BYTES).split('\n').reverse();
  for (const line of lines) {
    try {
      const p: unknown = JSON.parse(line);
      if (isRecord(p) && typeof p['step'] === 'number' && typeof p['loss'] === 'number') {
        return typeof p['tokensPerSecond'] === 'number'
          ? { step: p['step'], loss: p['loss'], tokensPerSecond: p['tokensPerSecond'] }
          : { step: p['step'], loss: p['loss'] };
      }
    } catch {
      // The first line of the tail is usually cut; a torn last line is being written.
    }
  }
  return undefined;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function jobBase(spec: Record<string, unknown>): JobProgress {
  const task = isRecord(spec['task']) && typeof spec['task']['name'] === 'string' ? spec['task']['name'] : 'unknown';
  const training = isRecord(spec['training']) ? spec['training'] : {};
  return {
    jobId: String(spec['jobId']),
    encoding: typeof spec['encoding'] === 'string' ? spec['encoding'] : 'unknown',
    task,
    seed: typeof spec['seed'] === 'number' ? spec['seed'] : 0,
    state: 'pending',
    step: 0,
    totalSteps: typeof training['steps'] === 'number' ? training['steps'] : 0,
  };
}

export function readProgress(runDir: string): RunProgress {
  const exp = readJson(join(runDir, 'experiment.json'));
  if (!isRecord(exp)) {
    // A `train --out` directory: one job, done when evaluation.json exists.
    const spec = readJson(join(runDir, 'job.json'));
    if (!isRecord(spec)) return { runId: basename(runDir), time: Date.now(), finished: false, jobs: [] };
    const job = jobBase(spec);
    const m = lastMetric(join(runDir, 'metrics.jsonl'));
    if (m !== undefined) Object.assign(job, m, { state: 'running' });
    const done = existsSync(join(runDir, 'evaluation.json'));
    if (done) job.state = 'done';
    return { runId: basename(runDir), time: Date.now(), finished: done, jobs: [job] };
  }
  const specs = Array.isArray(exp['jobs'])
    ? exp['jobs'].filter((j): j is Record<string, unknown> => isRecord(j) && typeof j['jobId'] === 'string')
    : [];
  const jobs = new Map(specs.map((s) => [String(s['jobId']), jobBase(s)]));
  let runId = typeof specs[0]?.['runId'] === 'string' ? String(specs[0]['runId']) : basename(runDir);
  let finished = false;
  const journal = join(runDir, 'journal.jsonl');
  if (existsSync(journal)) {
    for (const line of readFileSync(journal, 'utf8').split('\n')) {
      let e: unknown;
      try {
        e = JSON.parse(line);
      } catch {
        continue;
      }
      if (!isRecord(e)) continue;
      if (e['type'] === 'run_started' && typeof e['runId'] === 'string') runId = e['runId'];
      if (e['type'] === 'run_finished') finished = true;
      const job = typeof e['jobId'] === 'string' ? jobs.get(e['jobId']) : undefined;
      if (job === undefined) continue;
      switch (e['type']) {
        case 'job_assigned':
          job.state = 'running';
          break;
        case 'job_requeued':
          job.state = 'pending';
          break;
        case 'job_evaluating':
          job.state = 'evaluating';
          break;
        case 'job_done':
          job.state = 'done';
          break;
        case 'job_failed':
          job.state = 'failed';
          job.error = isRecord(e['error']) ? String(e['error']['message']) : 'failed';
          break;
      }
    }
  }
  const jobsDir = join(runDir, 'jobs');
  const onDisk = existsSync(jobsDir) ? readdirSync(jobsDir) : [];
  for (const id of onDisk) {
    const job = jobs.get(id);
    if (job === undefined) continue;
    const m = lastMetric(join(jobsDir, id, 'metrics.jsonl'));
    if (m !== undefined) Object.assign(job, m);
    if (existsSync(join(jobsDir, id, 'evaluation.json'))) job.state = 'done';
  }
  return { runId, time: Date.now(), finished, jobs: [...jobs.values()] };
}
