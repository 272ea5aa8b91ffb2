// Run directories for the report and serve tests: a hand-written one (exact, known numbers) and a small real
// one (real training for a few steps, real final models and evaluation.json, in the runs/<runId>/ layout).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type {
  EncodingName,
  Evaluation,
  JobId,
  JobSpec,
  MetricPoint,
  RunId,
  TaskSpec,
} from '../../protocol/messages.ts';

export type Problem = Evaluation['problems'][number];

/** A fresh directory under the system temp dir, removed when the test ends (pass or fail). */
export async function tempRunDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function evaluation(
  jobId: string,
  encoding: EncodingName,
  seed: number,
  problems: Problem[],
  extra: Partial<Evaluation> = {},
): Evaluation {
  const test = problems.filter((p) => p.split === 'test');
  const perLength: Evaluation['perLength'] = {};
  for (const p of problems) {
    const b = perLength[String(p.length)] ?? { n: 0, exactMatch: 0 };
    b.exactMatch = (b.exactMatch * b.n + (p.correct ? 1 : 0)) / (b.n + 1);
    b.n++;
    perLength[String(p.length)] = b;
  }
  return {
    jobId: jobId as JobId,
    encoding,
    task: 'addition',
    seed,
    backend: 'cpu',
    steps: 100,
    wallTimeS: 10,
    parameters: 1000,
    tokensPerSecond: 500,
    exactMatch: test.filter((p) => p.correct).length / Math.max(1, test.length),
    symbolicAccuracy: test.filter((p) => p.symbolic).length / Math.max(1, test.length),
    stepAccuracy: null,
    perLength,
    attentionEntropy: [
      [1, 2],
      [3, 4],
    ],
    errorTaxonomy: {
      format: 0,
      carry: 1,
      wrong_length: 0,
      single_digit: 0,
      other: test.filter((p) => !p.correct).length - 1,
    },
    problems,
    ...extra,
  };
}

/** n problems of one split; `correct(i)` says which are right. */
export function problems(
  n: number,
  split: string,
  length: (i: number) => number,
  correct: (i: number) => boolean,
): Problem[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `addition:${split}:1:${i}`,
    split,
    length: length(i),
    correct: correct(i),
    symbolic: correct(i),
    prediction: correct(i) ? '5' : '6',
    target: '5',
  }));
}

export interface HandRunJob {
  jobId: string;
  encoding: EncodingName;
  seed: number;
  evaluation?: Evaluation;
  metrics?: MetricPoint[];
  failed?: string;
}

/** A job of the hand-written run that finished: `<encoding>-addition-s<seed>`, evaluated on these problems. */
export function doneJob(
  encoding: EncodingName,
  seed: number,
  problems: Problem[],
  extra: Omit<HandRunJob, 'jobId' | 'encoding' | 'seed' | 'evaluation'> = {},
): HandRunJob {
  const jobId = `${encoding}-addition-s${seed}`;
  return { jobId, encoding, seed, evaluation: evaluation(jobId, encoding, seed, problems), ...extra };
}

const TASK: TaskSpec = { name: 'addition', params: { minDigits: 1, maxDigits: 3 } };

/** experiment.json as the coordinator writes it, for these jobs. */
export async function writeExperiment(
  dir: string,
  name: string,
  tasks: TaskSpec[],
  specs: readonly JobSpec[],
): Promise<void> {
  const first = specs[0];
  const experiment = {
    name,
    source: 'test',
    encodings: [...new Set(specs.map((s) => s.encoding))],
    tasks,
    seeds: [...new Set(specs.map((s) => s.seed))],
    preset: 'tiny',
    model: first?.model,
    training: first?.training,
    evaluation: first?.evaluation,
    jobs: specs,
  };
  await writeFile(join(dir, 'experiment.json'), JSON.stringify(experiment, null, 2));
}

const jobIds = (specs: readonly JobSpec[]): string[] => specs.map((s) => s.jobId);

/** The journal's first line. */
export function runStarted(runId: string, experiment: string, jobs: readonly string[], t = 1): string {
  return JSON.stringify({ t, type: 'run_started', runId, experiment, jobs, address: 'tcp://127.0.0.1:1' });
}

function spec(
  job: { jobId: string; encoding: EncodingName; seed: number },
  runId: string,
  task: TaskSpec = TASK,
): JobSpec {
  return {
    jobId: job.jobId as JobId,
    runId: runId as RunId,
    encoding: job.encoding,
    task,
    seed: job.seed,
    preset: 'tiny',
    model: { layers: 2, dModel: 32, heads: 2, ffnDim: 64, dropout: 0, maxLen: 48 },
    training: { steps: 100, batchSize: 8, learningRate: 0.001, warmupSteps: 0, weightDecay: 0, clipNorm: 1 },
    evaluation: { samples: 20 },
    checkpointEvery: 50,
  };
}

/** A run directory written by hand: experiment.json, journal.jsonl, jobs/<jobId>/{evaluation.json, metrics.jsonl}. */
export async function writeHandRun(dir: string, jobs: HandRunJob[], runId = 'hand-run'): Promise<string> {
  await mkdir(join(dir, 'jobs'), { recursive: true });
  const specs = jobs.map((j) => spec(j, runId));
  await writeExperiment(dir, 'hand', [TASK], specs);
  const journal: string[] = [runStarted(runId, 'hand', jobIds(specs))];
  for (const j of jobs) {
    const jobDir = join(dir, 'jobs', j.jobId);
    await mkdir(jobDir, { recursive: true });
    if (j.evaluation !== undefined) {
      await writeFile(join(jobDir, 'evaluation.json'), JSON.stringify(j.evaluation, null, 2));
      journal.push(JSON.stringify({ t: 2, type: 'job_done', jobId: j.jobId, epoch: 1 }));
    }
    if (j.failed !== undefined)
      journal.push(
        JSON.stringify({
          t: 2,
          type: 'job_failed',
          jobId: j.jobId,
          epoch: 1,
          error: { name: 'TrainError', message: j.failed, retryable: false },
        }),
      );
    if (j.metrics !== undefined)
      await writeFile(
        join(jobDir, 'metrics.jsonl'),
        j.metrics.map((m) => JSON.stringify({ epoch: 1, ...m })).join('\n') + '\n',
      );
  }
  await writeFile(join(dir, 'journal.jsonl'), journal.join('\n') + '\n');
  return dir;
}

export interface RealRunOptions {
  encodings: EncodingName[];
  seeds?: number[];
  steps?: number;
  samples?: number;
  lengthSamples?: number;
}

/**
 * A small real run: each job trains `steps` steps of the tiny preset (tfjs, cpu/wasm) through the same
 * runLocalTraining the `train` command uses, written in the runs/<runId>/ layout the coordinator produces.
 */
export async function writeRealRun(dir: string, options: RealRunOptions): Promise<string> {
  const { buildJobSpec } = await import('../../src/train/job.ts');
  const { runLocalTraining } = await import('../../src/train/local-run.ts');
  const runId = 'real-run';
  const task: TaskSpec = { name: 'addition', params: { minDigits: 1, maxDigits: 2 } };
  const lengthTask: TaskSpec = { name: 'addition', params: { minDigits: 3, maxDigits: 3 } };
  const seeds = options.seeds ?? [1];
  const specs = options.encodings.flatMap((encoding) =>
    seeds.map((seed) =>
      buildJobSpec({
        encoding,
        task,
        seed,
        preset: 'tiny',
        steps: options.steps ?? 4,
        batchSize: 8,
        learningRate: 0.003,
        evalSamples: options.samples ?? 12,
        lengthTask,
        lengthSamples: options.lengthSamples ?? 6,
        checkpointEvery: 1000,
        runId,
      }),
    ),
  );
  await mkdir(join(dir, 'jobs'), { recursive: true });
  await writeExperiment(dir, 'real-tiny', [task], specs);
  const journal: string[] = [runStarted(runId, 'real-tiny', jobIds(specs), Date.now())];
  for (const s of specs) {
    await runLocalTraining(s, { out: join(dir, 'jobs', s.jobId), checkpointEvery: 0, log: () => {} });
    journal.push(JSON.stringify({ t: Date.now(), type: 'job_done', jobId: s.jobId, epoch: 1 }));
  }
  journal.push(JSON.stringify({ t: Date.now(), type: 'run_finished', done: specs.length, failed: 0 }));
  await writeFile(join(dir, 'journal.jsonl'), journal.join('\n') + '\n');
  return dir;
}

/** Decodes a PNG far enough to trust it: signature, every chunk's CRC, IHDR, and the inflated image size. */
export async function decodePng(bytes: Uint8Array): Promise<{ width: number; height: number }> {
  const { inflateSync, crc32 } = await import('node:zlib');
  const buf = Buffer.from(bytes);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buf.subarray(0, 8).equals(sig)) throw new Error('not a PNG: bad signature');
  let off = 8;
  let width = 0;
  let height = 0;
  let bitDepth = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  let ended = false;
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString('latin1');
    const data = buf.subarray(off + 8, off + 8 + len);
    const crc = buf.readUInt32BE(off + 8 + len);
    if (crc32(buf.subarray(off + 4, off + 8 + len)) !== crc) throw new Error(`PNG chunk ${type} has a bad CRC`);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      bitDepth = data[8] ?? 0;
      colorType = data[9] ?? 0;
    }
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
    if (type === 'IEND') {
      ended = true;
      break;
    }
  }
  if (!ended) throw new Error('PNG has no IEND chunk (truncated)');
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (channels === undefined || width === 0 || height === 0)
    throw new Error(`PNG header is invalid (color type ${colorType}, ${width}x${height})`);
  const raw = inflateSync(Buffer.concat(idat));
  const expected = height * (1 + Math.ceil((width * channels * bitDepth) / 8));
  if (raw.length !== expected) throw new Error(`PNG image data is ${raw.length} bytes, expected ${expected}`);
  return { width, height };
}
