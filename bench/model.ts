// `npm run bench -- model [throughput|control|all] [--backend wasm] [--encodings rope,alibi] [--steps 20]
//   [--rounds 5] [--batch 64] [--max-steps 4000] [--check-every 250] [--eval-samples 200] [--lr 3e-3]
//   [--min-digits 3] [--max-digits 3] [--jobs 1] [--seed 1] [--model '{"dModel": 64, "heads": 4}'] [--attention]
//   [--table random]`
// throughput (default): per encoding, training tokens/s through pe-arena (Workload.trainSteps: batching,
//   schedule, AdamW with clipping, one sync per step) against a bare tfjs loop (variableGrads + tf.train.adam,
//   pre-built batches) over the same model config and batches, step for step alternately so machine load hits
//   both alike (the ratio is the median over those pairs of steps); and greedy-decoding (inference) tokens/s.
// control: 3-digit addition (both operands 3 digits) with reversed answers, tiny preset, batch 64, lr 3e-3: steps
//   until exact match on held-out in-distribution problems reaches 95% (checked every --check-every steps, at most
//   --max-steps), and wall time. Slow on 2 cores: --jobs 2 runs two encodings at once, each in its own process.
//   With --attention each check also says where every head looks from the positions that predict the units and
//   the tens digit. --table random (a diagnostic, sinusoidal only) puts fixed random rows of the sinusoidal table's
//   RMS in the table's place: position stays absolute, in the token stream and unlearned; only how alike the rows
//   are changes (see `npm run bench -- positions`).
//   Progress goes to bench/results/partial/model-control-<encoding>.json as it runs. Each sub-suite keeps the
//   other's latest numbers in bench/results/model.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { ENCODINGS, type EncodingName, type JobSpec, type ModelSpec } from '../protocol/messages.ts';
import { createSource, drawExamples } from '../src/data/tasks.ts';
import type { Example } from '../src/data/types.ts';
import { BOS, EOS, tokenizer } from '../src/data/tokenizer.ts';
import { scoreProblems } from '../src/eval/metrics.ts';
import { greedyDecode } from '../src/model/decode.ts';
import type { Transformer } from '../src/model/transformer.ts';
import { selectBackend, isBackendName } from '../src/train/backend.ts';
import { makeBatch, type Batch } from '../src/train/batches.ts';
import { buildJobSpec, presetModel } from '../src/train/job.ts';
import { buildModel, createTfWorkload, predict } from '../src/train/tf-workload.ts';
import { RANDOM_TABLE_SEED, randomTable } from './positions.ts';
import { maskedCrossEntropy } from '../src/train/trainer.ts';
import type { BackendName } from '../src/train/workload.ts';
import { median } from './stats.ts';

interface Args {
  mode: 'throughput' | 'control' | 'all';
  backend?: BackendName;
  encodings: EncodingName[];
  steps: number;
  rounds: number;
  maxSteps: number;
  checkEvery: number;
  evalSamples: number;
  batch: number;
  /** Peak learning rate of the control runs (the throughput runs keep the job default). */
  lr: number;
  minDigits: number;
  maxDigits: number;
  /** Control runs at a time, each in its own process. */
  jobs: number;
  /** Seed of the control runs' initialisation and data. */
  seed: number;
  /** Overrides of the tiny preset, e.g. {"dModel": 64, "heads": 4, "ffnDim": 256}. */
  model?: Partial<ModelSpec>;
  /** Control checks also record where each head attends from the units- and tens-digit positions (attentionFromAnswer). */
  attention: boolean;
  /** The control task in the spaced format: "1 2 3 + 4 5 6 =" -> "9 7 5" (a space between every two characters). */
  spaced: boolean;
  /** The control task with the operands' digits spaced: "1 2 3+4 5 6=" -> "975". */
  spaceDigits: boolean;
  /** 'random': the sinusoidal runs use fixed random rows instead of the table (useRandomTable). */
  table: 'sinusoidal' | 'random';
}

function parseArgs(args: string[]): Args {
  const out: Args = {
    mode: 'throughput',
    encodings: [...ENCODINGS],
    steps: 20,
    rounds: 5,
    maxSteps: 4000,
    checkEvery: 250,
    evalSamples: 200,
    batch: 64,
    lr: 3e-3,
    minDigits: 3,
    maxDigits: 3,
    jobs: 1,
    seed: 1,
    attention: false,
    spaced: false,
    spaceDigits: false,
    table: 'sinusoidal',
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (): number => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} must be a positive integer`);
      return n;
    };
    if (a === 'throughput' || a === 'control' || a === 'all') out.mode = a;
    else if (a === '--backend') {
      const b = value();
      if (!isBackendName(b)) throw new Error(`--backend: unknown backend ${b}`);
      out.backend = b;
    } else if (a === '--encodings') {
      const list = value().split(',');
      for (const e of list)
        if (!(ENCODINGS as readonly string[]).includes(e)) throw new Error(`--encodings: unknown encoding ${e}`);
      out.encodings = list as EncodingName[];
    } else if (a === '--steps') out.steps = num();
    else if (a === '--rounds') out.rounds = num();
    else if (a === '--max-steps') out.maxSteps = num();
    else if (a === '--check-every') out.checkEvery = num();
    else if (a === '--eval-samples') out.evalSamples = num();
    else if (a === '--batch') out.batch = num();
    else if (a === '--jobs') out.jobs = num();
    else if (a === '--seed') out.seed = num();
    else if (a === '--model') out.model = JSON.parse(value()) as Partial<ModelSpec>;
    else if (a === '--attention') out.attention = true;
    else if (a === '--spaced') out.spaced = true;
    else if (a === '--space-digits') out.spaceDigits = true;
    else if (a === '--table') {
      const t = value();
      if (t !== 'sinusoidal' && t !== 'random') throw new Error(`--table: sinusoidal or random, not ${t}`);
      out.table = t;
    } else if (a === '--min-digits') out.minDigits = num();
    else if (a === '--max-digits') out.maxDigits = num();
    else if (a === '--lr') {
      const lr = Number(value());
      if (!(lr > 0 && lr < 1)) throw new Error('--lr must be in (0, 1)');
      out.lr = lr;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (out.spaced && out.spaceDigits) throw new Error('--spaced and --space-digits: one format at a time');
  if (out.table === 'random' && out.encodings.some((e) => e !== 'sinusoidal'))
    throw new Error('--table random replaces the sinusoidal table: use it with --encodings sinusoidal');
  return out;
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

/** The control task: addition with reversed answers; both operands have exactly 3 digits unless told otherwise. */
function controlTask(a: Args): JobSpec['task'] {
  return {
    name: 'addition',
    params: {
      minDigits: a.minDigits,
      maxDigits: a.maxDigits,
      reverse: true,
      ...(a.spaced ? { spaced: true } : {}),
      ...(a.spaceDigits ? { spaceDigits: true } : {}),
    },
  };
}

/** The tiny preset with the --model overrides on top: what the control trains, and what its results record. */
function controlModel(a: Args): ModelSpec {
  return { ...presetModel('tiny'), ...a.model };
}

function controlJob(a: Args, encoding: EncodingName, steps: number, lr?: number): JobSpec {
  return buildJobSpec({
    encoding,
    task: controlTask(a),
    preset: 'tiny',
    model: controlModel(a),
    steps,
    batchSize: a.batch,
    evalSamples: 0,
    seed: a.seed,
    checkpointEvery: 0,
    ...(lr === undefined ? {} : { learningRate: lr }),
  });
}

/** A bare tfjs training loop over the same model config and batches: the ceiling pe-arena is measured against. */
class BareLoop {
  private readonly model;
  private readonly optimizer = tf.train.adam(1e-3, 0.9, 0.98, 1e-8);
  constructor(spec: JobSpec) {
    this.model = buildModel(spec);
  }
  async step(batch: Batch): Promise<number> {
    const loss = tf.tidy(() => {
      const ids = tf.tensor2d(batch.ids, [batch.batchSize, batch.length], 'int32');
      const weights = tf.tensor3d(batch.weights, [batch.batchSize, batch.length, tokenizer.vocabSize]);
      const { value, grads } = tf.variableGrads(
        () => maskedCrossEntropy(this.model.forward(ids, { training: true, dropoutSeed: 0 }).logits, weights),
        this.model.variables,
      );
      this.optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
      return value;
    });
    const [v = NaN] = await loss.data();
    loss.dispose();
    return v;
  }
  dispose(): void {
    this.optimizer.dispose();
    this.model.dispose();
  }
}

async function throughput(a: Args, backend: BackendName): Promise<Record<string, unknown>> {
  const flat: Record<string, number> = {};
  const detail: Record<string, unknown> = {};
  for (const encoding of a.encodings) {
    const spec = controlJob(a, encoding, 100_000);
    const workload = await createTfWorkload(spec, { backend });
    const bare = new BareLoop(spec);
    // The bare loop trains on the very batches pe-arena draws (a source with the job's task, seed and split
    // replays them), built before timing, so it pays nothing for data.
    const source = createSource(spec.task, spec.seed, 'train');
    const warmup = 2;
    const batches = Array.from({ length: warmup + a.rounds * a.steps }, () =>
      makeBatch(drawExamples(source, a.batch), tokenizer, spec.model.maxLen),
    );
    // Warm-up: first calls compile kernels and fill caches.
    await workload.trainSteps(warmup);
    for (const b of batches.slice(0, warmup)) await bare.step(b);
    // Alternate single steps (ours, bare, ours, ...) so load changes on a shared machine hit both alike; time
    // both by the wall clock and by this process's CPU time (the steadier measure when cores are contended).
    const ours: number[] = [];
    const theirs: number[] = [];
    // Each step of ours is paired with the bare step right after it on the same batch; the median of the pair
    // ratios is the comparison, so a burst of load elsewhere moves one pair, not the result.
    const pairRatios: number[] = [];
    let oursCpu = 0;
    let theirsCpu = 0;
    let totalTokens = 0;
    for (let r = 0; r < a.rounds; r++) {
      let oursMs = 0;
      let theirsMs = 0;
      let tokens = 0;
      for (const b of batches.slice(warmup + r * a.steps, warmup + (r + 1) * a.steps)) {
        const tokensBefore = workload.trainer.tokensProcessed;
        let cpu = process.cpuUsage();
        let t = performance.now();
        await workload.trainSteps(1);
        const oursStepMs = performance.now() - t;
        cpu = process.cpuUsage(cpu);
        oursCpu += (cpu.user + cpu.system) / 1000;
        if (workload.trainer.tokensProcessed - tokensBefore !== b.tokens)
          throw new Error('bench: pe-arena and the bare loop drew different batches');
        tokens += b.tokens;
        cpu = process.cpuUsage();
        t = performance.now();
        await bare.step(b);
        const theirsStepMs = performance.now() - t;
        cpu = process.cpuUsage(cpu);
        theirsCpu += (cpu.user + cpu.system) / 1000;
        oursMs += oursStepMs;
        theirsMs += theirsStepMs;
        pairRatios.push(theirsStepMs / oursStepMs);
      }
      totalTokens += tokens;
      ours.push((tokens * 1000) / oursMs);
      theirs.push((tokens * 1000) / theirsMs);
    }
    const cpuRatio = theirsCpu / oursCpu;
    // Inference: greedy decoding with the KV cache, 64 prompts, up to 6 new tokens each (3-digit sums + EOS).
    const testSet = drawExamples(createSource(spec.task, 1, 'test'), 64, { unique: true });
    const prompts = testSet.map((e) => [BOS, ...tokenizer.encode(e.prompt)]);
    greedyDecode(workload.model, prompts.slice(0, 8), { maxNewTokens: 6, eosId: EOS });
    let generated = 0;
    const t = performance.now();
    for (let r = 0; r < a.rounds; r++) {
      // Forced length: count the tokens the decoder actually produced (it stops at EOS).
      generated += greedyDecode(workload.model, prompts, { maxNewTokens: 6, eosId: -1 }).reduce(
        (s, o) => s + o.length,
        0,
      );
    }
    const inference = (generated * 1000) / (performance.now() - t);
    const tps = median(ours);
    const bareTps = median(theirs);
    flat[`${encoding}_tokens_per_s`] = round(tps);
    flat[`${encoding}_bare_tokens_per_s`] = round(bareTps);
    flat[`${encoding}_ratio`] = round(median(pairRatios), 3);
    flat[`${encoding}_cpu_ratio`] = round(cpuRatio, 3);
    flat[`${encoding}_inference_tokens_per_s`] = round(inference);
    flat[`${encoding}_train_steps_per_s`] = round((tps * a.rounds * a.steps) / totalTokens, 2);
    // Steps per second of CPU time: what one uncontended core would give (wall numbers suffer on a shared box).
    flat[`${encoding}_train_steps_per_cpu_s`] = round((a.rounds * a.steps * 1000) / oursCpu, 2);
    detail[encoding] = {
      tokensPerSecond: ours.map((x) => round(x)),
      bareTokensPerSecond: theirs.map((x) => round(x)),
      inferenceTokensPerSecond: round(inference),
      parameters: workload.parameterCount,
    };
    process.stderr.write(
      `${encoding}: ${round(tps)} tok/s vs bare ${round(bareTps)} (median step ratio ${round(median(pairRatios), 3)}, by CPU time ${round(cpuRatio, 3)}), inference ${round(inference)} tok/s\n`,
    );
    bare.dispose();
    workload.dispose();
  }
  const ratios = a.encodings.map((e) => flat[`${e}_ratio`] as number);
  const cpuRatios = a.encodings.map((e) => flat[`${e}_cpu_ratio`] as number);
  return {
    ...flat,
    min_ratio: Math.min(...ratios),
    min_cpu_ratio: Math.min(...cpuRatios),
    batch: a.batch,
    steps_per_round: a.steps,
    rounds: a.rounds,
    throughput: detail,
  };
}

interface ControlResult {
  stepsTo95: number | null;
  wallTimeS: number;
  steps: number;
  finalExactMatch: number;
  /** digits: accuracy at each answer position (see positionAccuracy); attends: see attentionFromAnswer. */
  curve: {
    step: number;
    exactMatch: number;
    loss: number;
    seconds: number;
    digits: number[];
    attends?: string[];
  }[];
}

/**
 * For each position k of the answer as written (reversed: k = 0 is the units digit), the share of held-out problems
 * whose answer has a k-th character that the prediction gets right: which digits an encoding has learned so far.
 */
function positionAccuracy(examples: readonly { target: string }[], predictions: readonly string[]): number[] {
  const longest = Math.max(0, ...examples.map((e) => e.target.length));
  return Array.from({ length: longest }, (_, k) => {
    const having = examples.flatMap((e, i) => (k < e.target.length ? [predictions[i]?.[k] === e.target[k]] : []));
    return round(having.filter(Boolean).length / having.length, 3);
  });
}

/**
 * Where each head looks from the input positions that predict the units and the tens digit (the "=" of a
 * reversed-answer problem, and the units digit after it), teacher-forced over the examples: per layer, each head's
 * two most attended key positions and their shares of the attention, averaged over the examples, e.g.
 * "units L0 3:62/7:30 ...". With 3-digit operands the sequence is BOS a a a + b b b = c0 c1 ..., so the units
 * digits sit at positions 3 and 7, the tens at 2 and 6, the hundreds at 1 and 5.
 */
function attentionFromAnswer(model: Transformer, examples: readonly Example[]): string[] {
  const lines: string[] = [];
  for (const [label, answerChars] of [
    ['units', 0],
    ['tens', 1],
  ] as const) {
    const sequences = examples.map((e) => [BOS, ...tokenizer.encode(e.prompt + e.target.slice(0, answerChars))]);
    const length = sequences[0]?.length ?? 0;
    const same = sequences.filter((s) => s.length === length);
    if (same.length === 0) continue;
    tf.tidy(() => {
      const ids = tf.tensor2d(same, [same.length, length], 'int32');
      const { attention = [] } = model.forward(ids, { training: false, collectAttention: true });
      attention.forEach((layer, l) => {
        // [batch, heads, query, key] -> the last query's row per head, averaged over the batch.
        const rows = layer.mean(0).arraySync() as number[][][];
        const heads = rows.map((head) => {
          const row = head[length - 1] ?? [];
          const [first, second] = row
            .map((p, k) => [k, p] as const)
            .sort((x, y) => y[1] - x[1])
            .map(([k, p]) => `${k}:${Math.round(100 * p)}`);
          return `${first}/${second}`;
        });
        lines.push(`${label} L${l} ${heads.join(' ')}`);
      });
    });
  }
  return lines;
}

/**
 * The diagnostic of --table random: the model's sinusoidal table replaced by fixed rows of normal(0, 1/sqrt(2))
 * entries (the table's RMS: each sin/cos pair has a square sum of 1), drawn from RANDOM_TABLE_SEED (randomTable), added
 * in the same place. Returns the table, for the caller to dispose.
 */
export function useRandomTable(model: Transformer): tf.Tensor2D {
  const { dModel, maxLen } = model.config;
  const table = tf.tensor2d(randomTable(maxLen, dModel, Math.SQRT1_2, RANDOM_TABLE_SEED).flat(), [maxLen, dModel]);
  model.positional.embed = (x, start) => tf.add(x, tf.slice(table, [start, 0], [x.shape[1], dModel]));
  return table;
}

/** One encoding's control run, in this process; progress lines go to stderr and its partial file. */
async function controlOne(a: Args, backend: BackendName, encoding: EncodingName): Promise<ControlResult> {
  const partialFile = join(
    import.meta.dirname,
    'results',
    'partial',
    `model-control-${encoding}${a.table === 'random' ? '-random-table' : ''}${a.spaced ? '-spaced' : ''}${a.spaceDigits ? '-space-digits' : ''}${a.seed === 1 ? '' : `-seed${a.seed}`}.json`,
  );
  await mkdir(dirname(partialFile), { recursive: true });
  const spec = controlJob(a, encoding, a.maxSteps, a.lr);
  const workload = await createTfWorkload(spec, { backend });
  const randomRows = a.table === 'random' ? useRandomTable(workload.model) : undefined;
  const heldOut = drawExamples(createSource(spec.task, spec.seed, 'test'), a.evalSamples, { unique: true });
  const started = performance.now();
  const curve: ControlResult['curve'] = [];
  let stepsTo95: number | null = null;
  let loss = NaN;
  while (workload.step < a.maxSteps && stepsTo95 === null) {
    const points = await workload.trainSteps(Math.min(a.checkEvery, a.maxSteps - workload.step));
    loss = points.at(-1)?.loss ?? loss;
    const predictions = predict(workload.model, heldOut, spec.model.maxLen);
    const exact = scoreProblems(heldOut, predictions, 'test').exactMatch;
    const digits = positionAccuracy(heldOut, predictions);
    const attends = a.attention ? attentionFromAnswer(workload.model, heldOut) : undefined;
    const seconds = (performance.now() - started) / 1000;
    curve.push({
      step: workload.step,
      exactMatch: exact,
      loss: round(loss, 4),
      seconds: round(seconds),
      digits,
      ...(attends === undefined ? {} : { attends }),
    });
    process.stderr.write(
      `control ${encoding}: step ${workload.step} loss ${loss.toFixed(4)} exact ${(100 * exact).toFixed(1)}% ` +
        `per answer position ${digits.map((d) => `${round(100 * d, 0)}%`).join(' ')} (${round(seconds)} s)` +
        `${attends === undefined ? '' : `; attention from the answer: ${attends.join('; ')}`}\n`,
    );
    if (exact >= 0.95) stepsTo95 = workload.step;
    // A control run is long: keep what it has so far on disk, in case it is stopped before the end.
    await writeFile(partialFile, JSON.stringify({ backend, encoding, stepsTo95, curve }, null, 2) + '\n');
  }
  const steps = workload.step;
  workload.dispose();
  randomRows?.dispose();
  return {
    stepsTo95,
    wallTimeS: round((performance.now() - started) / 1000),
    steps,
    finalExactMatch: curve.at(-1)?.exactMatch ?? 0,
    curve,
  };
}

/** Runs controlOne in a child process (this file with --control-child) and reads its result line. */
function controlChild(a: Args, backend: BackendName, encoding: EncodingName): Promise<ControlResult> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), '--control-child', JSON.stringify({ ...a, backend, encoding })],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line !== undefined) resolve(JSON.parse(line.slice('RESULT '.length)) as ControlResult);
      else reject(new Error(`control ${encoding}: child exited with code ${code}`));
    });
  });
}

/** What a control result depends on besides the encoding. */
function controlSettings(a: Args): Record<string, unknown> {
  return {
    task: controlTask(a),
    preset: 'tiny',
    model: controlModel(a), // in full: a preset edited since is other settings
    ...(a.table === 'random' ? { table: 'random' } : {}),
    batch: a.batch,
    learningRate: a.lr,
    seed: a.seed,
    evalSamples: a.evalSamples,
    checkEvery: a.checkEvery,
    maxSteps: a.maxSteps,
  };
}

async function control(a: Args, backend: BackendName): Promise<Record<string, unknown>> {
  // Encodings run --jobs at a time, each in its own process (one core each on an otherwise idle machine).
  const results = new Map<EncodingName, ControlResult>();
  const queue = [...a.encodings];
  const worker = async (): Promise<void> => {
    for (let e = queue.shift(); e !== undefined; e = queue.shift())
      results.set(e, a.jobs === 1 ? await controlOne(a, backend, e) : await controlChild(a, backend, e));
  };
  await Promise.all(Array.from({ length: Math.min(a.jobs, a.encodings.length) }, worker));
  const flat: Record<string, number | string> = {};
  const detail: Record<string, ControlResult> = {};
  for (const encoding of a.encodings) {
    const r = results.get(encoding)!;
    flat[`${encoding}_steps_to_95`] = r.stepsTo95 ?? `>${a.maxSteps}`;
    flat[`${encoding}_control_wall_s`] = r.wallTimeS;
    flat[`${encoding}_control_steps_per_s`] = round(r.steps / r.wallTimeS, 2);
    detail[encoding] = r;
  }
  return { ...flat, control: { ...controlSettings(a), jobs: a.jobs, encodings: detail } };
}

/**
 * bench/run.ts rewrites model.json, so a sub-suite keeps the other's latest numbers (read now, at the end of a long
 * run); a control run of some encodings also keeps the others' control results when the settings are the same.
 */
async function previousResults(a: Args): Promise<Record<string, unknown>> {
  let previous: Record<string, unknown>;
  try {
    const file = JSON.parse(await readFile(join(import.meta.dirname, 'results', 'model.json'), 'utf8')) as {
      results?: Record<string, unknown>;
    };
    previous = file.results ?? {};
  } catch {
    return {}; // no earlier results: this sub-suite alone
  }
  const isControl = (k: string): boolean => k === 'control' || k.includes('_control_') || k.includes('steps_to_95');
  const kept = Object.fromEntries(
    Object.entries(previous).filter(([k]) => k !== 'backend' && (a.mode === 'control' ? !isControl(k) : isControl(k))),
  );
  if (a.mode !== 'control') return kept;
  type Control = Record<string, unknown> & { encodings?: Record<string, unknown> };
  const before = previous['control'] as Control | undefined;
  const settings = (c: Control | undefined): string => JSON.stringify({ ...c, encodings: undefined, jobs: undefined });
  if (before?.encodings === undefined || settings(before) !== settings(controlSettings(a))) return kept;
  const others = Object.keys(before.encodings).filter((e) => !(a.encodings as string[]).includes(e));
  const flat = Object.entries(previous).filter(([k]) => others.some((e) => k.startsWith(`${e}_`) && isControl(k)));
  return {
    ...kept,
    ...Object.fromEntries(flat),
    control: { ...before, encodings: Object.fromEntries(others.map((e) => [e, before.encodings?.[e]])) },
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const a = parseArgs(args);
  const choice = await selectBackend(a.backend, (line) => process.stderr.write(`${line}\n`));
  let results: Record<string, unknown> = { backend: choice.name };
  if (a.mode !== 'control') results = { ...results, ...(await throughput(a, choice.name)) };
  if (a.mode !== 'throughput') results = { ...results, ...(await control(a, choice.name)) };
  if (a.mode !== 'all') {
    const previous = await previousResults(a);
    type Control = { encodings?: Record<string, unknown> } | undefined;
    const [before, now] = [previous['control'] as Control, results['control'] as Control];
    results = { ...previous, ...results };
    if (before !== undefined && now !== undefined)
      results['control'] = { ...now, encodings: { ...before.encodings, ...now.encodings } };
  }
  return results;
}

if (process.argv[2] === '--control-child') {
  const { backend, encoding, ...a } = JSON.parse(process.argv[3] ?? '{}') as Args & {
    backend: BackendName;
    encoding: EncodingName;
  };
  await selectBackend(backend, () => {});
  process.stdout.write(`RESULT ${JSON.stringify(await controlOne(a, backend, encoding))}\n`);
  process.exit(0);
}
