// `pe-arena train`: one job in one process, with a progress bar on a TTY (plain lines otherwise). Writes
// checkpoints, the final model and evaluation.json under --out. TF.js loads only when the command runs.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import {
  ENCODINGS,
  type EncodingName,
  type Evaluation,
  type JobSpec,
  type MetricPoint,
  type ModelSpec,
  type TaskSpec,
} from '../../protocol/messages.ts';
import type { BackendName } from '../train/workload.ts';

interface TrainFlags {
  pe?: string;
  task: string;
  preset: string;
  steps: number;
  out: string;
  seed: number;
  batch: number;
  lr: number;
  warmup?: number;
  weightDecay: number;
  clip: number;
  backend?: string;
  data?: string;
  format?: string;
  holdout?: number;
  checkpointEvery: number;
  resume?: string;
  digits?: [number, number];
  reverse?: boolean;
  spaced?: boolean;
  spaceDigits?: boolean;
  ops?: [number, number];
  maxValue?: number;
  param: string[];
  evalSamples: number;
  lengthDigits?: [number, number];
  lengthSamples?: number;
  lengthRange?: [number, number];
  perLength?: number;
  model: string[];
  progress: string;
}

const int =
  (name: string, min = 1) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${value}'`);
    return n;
  };

const positive =
  (name: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a non-negative number, got '${value}'`);
    return n;
  };

/** "3" or "1-3" -> [min, max]. */
const range =
  (name: string) =>
  (value: string): [number, number] => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(value.trim());
    if (m === null) throw new InvalidArgumentError(`${name} must look like 3 or 1-3, got '${value}'`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a < 1 || b < a) throw new InvalidArgumentError(`${name}: need 1 <= min <= max, got '${value}'`);
    return [a, b];
  };

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** "key=value" pairs -> an object; `flag` names the option in errors. */
function keyValues(pairs: string[], flag: string): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const kv of pairs) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new InvalidArgumentError(`${flag} must look like key=value, got '${kv}'`);
    out[kv.slice(0, i)] = parseParamValue(kv.slice(i + 1));
  }
  return out;
}

function parseParamValue(raw: string): number | string | boolean {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  const n = Number(raw);
  return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
}

/** The task spec the flags describe (generator params, or the user's JSONL file). */
export function taskFromFlags(
  flags: Pick<
    TrainFlags,
    | 'task'
    | 'data'
    | 'format'
    | 'holdout'
    | 'digits'
    | 'reverse'
    | 'spaced'
    | 'spaceDigits'
    | 'ops'
    | 'maxValue'
    | 'param'
  >,
): TaskSpec {
  if (flags.data !== undefined) {
    const params: TaskSpec['params'] = { path: resolve(flags.data) };
    if (flags.format !== undefined) params['format'] = flags.format;
    if (flags.holdout !== undefined) params['holdout'] = flags.holdout;
    return { name: 'jsonl', params };
  }
  const params: TaskSpec['params'] = {};
  if (flags.digits !== undefined) [params['minDigits'], params['maxDigits']] = flags.digits;
  if (flags.reverse === true) params['reverse'] = true;
  if (flags.spaced === true) params['spaced'] = true;
  if (flags.spaceDigits === true) params['spaceDigits'] = true;
  if (flags.ops !== undefined) [params['minOps'], params['maxOps']] = flags.ops;
  if (flags.maxValue !== undefined) params['maxValue'] = flags.maxValue;
  Object.assign(params, keyValues(flags.param, '--param'));
  return { name: flags.task, params };
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** A one-line progress bar on a TTY, else a plain line every ~5% of the run. */
function progressReporter(mode: string): { step: (p: MetricPoint, total: number) => void; end: () => void } {
  const tty = mode === 'bar' || (mode === 'auto' && process.stderr.isTTY === true);
  let lastPlain = 0;
  let lastDraw = 0;
  let started = 0;
  let firstStep: number | undefined;
  return {
    step(p, total) {
      // Rates count from the first step of this process (a resumed run starts mid-way).
      if (firstStep === undefined) {
        firstStep = p.step - 1;
        started = performance.now() - 1;
        lastPlain = firstStep;
      }
      const elapsed = (performance.now() - started) / 1000;
      const rate = (p.step - firstStep) / Math.max(elapsed, 1e-9);
      const eta = (total - p.step) / Math.max(rate, 1e-9);
      const text = `step ${p.step}/${total}  loss ${p.loss.toFixed(4)}  lr ${p.learningRate.toExponential(2)}  |g| ${p.gradNorm.toFixed(2)}  ${Math.round(p.tokensPerSecond)} tok/s  ${rate.toFixed(2)} steps/s  eta ${formatDuration(eta)}`;
      if (tty) {
        // Redraw at most ~10 times a second: terminal writes are not free.
        const now = performance.now();
        if (now - lastDraw < 100 && p.step < total) return;
        lastDraw = now;
        const width = 24;
        const filled = Math.round((width * p.step) / total);
        process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      } else {
        const every = Math.max(1, Math.round(total / 20));
        if (p.step - lastPlain >= every || p.step === total) {
          lastPlain = p.step;
          process.stderr.write(`${text}\n`);
        }
      }
    },
    end() {
      if (tty) process.stderr.write('\n');
    },
  };
}

async function train(flags: TrainFlags, command: Command): Promise<void> {
  const { runLocalTraining } = await import('../train/local-run.ts');
  const { isBackendName } = await import('../train/backend.ts');
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  if (flags.backend !== undefined && !isBackendName(flags.backend)) {
    throw new InvalidArgumentError(
      `--backend must be one of tensorflow-gpu, tensorflow, wasm, cpu; got '${flags.backend}'`,
    );
  }
  const backend = flags.backend as BackendName | undefined;
  const { spec, resumeFrom } =
    flags.resume === undefined ? { spec: await newJob(flags) } : await resumedJob(flags.resume, flags, command, log);
  const out = resolve(flags.out);
  const stop = stopOnSignal(log);
  const progress = progressReporter(flags.progress);
  try {
    const result = await runLocalTraining(spec, {
      out,
      ...(backend === undefined ? {} : { backend }),
      ...(resumeFrom === undefined ? {} : { resumeFrom }),
      checkpointEvery: flags.checkpointEvery,
      log,
      onStep: (p, total) => progress.step(p, total),
      onEvaluate: (done, total) => {
        if (done === total) log(`evaluated ${total} problems`);
      },
      shouldStop: () => stop.requested,
    });
    progress.end();
    if (result.evaluation === null) {
      log(`stopped at step ${result.stoppedAt}; resume with --resume ${result.checkpoints.at(-1) ?? '?'}`);
      process.exitCode = 130;
      return;
    }
    logEvaluation(result.evaluation, out, log);
    logPerLength(result.evaluation, spec, log);
  } finally {
    stop.release();
  }
}

/** The job a checkpoint holds; only a longer (or shorter) run may be asked for on the command line. */
async function resumedJob(
  file: string,
  flags: TrainFlags,
  command: Command,
  log: (line: string) => void,
): Promise<{ spec: JobSpec; resumeFrom: Uint8Array }> {
  const { readTrainingCheckpoint } = await import('../train/trainer.ts');
  const resumeFrom = new Uint8Array(await readFile(file));
  const { meta } = readTrainingCheckpoint(resumeFrom);
  let spec = meta.job;
  if (command.getOptionValueSource('steps') === 'cli')
    spec = { ...spec, training: { ...spec.training, steps: flags.steps } };
  log(
    `resuming ${String(spec.jobId)} (${spec.encoding}, ${spec.task.name}) from step ${meta.step} of ${spec.training.steps}`,
  );
  return { spec, resumeFrom };
}

/** Experiment-file fields in the shared checks' messages, as the flags that set them here. */
const FLAG_OF_FIELD: [RegExp, string][] = [
  [/evaluation\.lengthRange(\[\d\])?/g, '--length-range'],
  [/evaluation\.perLength/g, '--per-length'],
  [/(evaluation\.)?lengthTask/g, '--length-digits'],
  [/tasks\[0\]/g, '--task'],
  [/^preset\b/g, '--preset'],
];

/** A failure of the experiment file's checks, reworded to name this command's flags. */
const failWithFlags = (field: string, problem: string): never => {
  let text = `${field} ${problem}`;
  for (const [pattern, flag] of FLAG_OF_FIELD) text = text.replace(pattern, flag);
  const modelField = /^model\.(\w+)/.exec(field)?.[1];
  if (modelField !== undefined) text += ` (set by --preset, or --model ${modelField}=...)`;
  throw new InvalidArgumentError(text);
};

/**
 * The model (preset plus --model overrides) and the per-length evaluation (--length-range, --per-length), checked
 * by the experiment file's own rules so `train` and `run` accept and refuse the same things.
 */
async function modelAndLengthSets(
  flags: TrainFlags,
  task: TaskSpec,
  lengthTask: TaskSpec | undefined,
): Promise<{ model: ModelSpec; lengthRange?: [number, number]; perLength?: number }> {
  const { compileJobEvaluation, compileJobModel } = await import('../../coordinator/experiment.ts');
  const { loadPresets } = await import('../../protocol/presets.ts');
  const model = compileJobModel(flags.preset, keyValues(flags.model, '--model'), loadPresets(), failWithFlags);
  if (flags.lengthRange === undefined && flags.perLength === undefined) return { model };
  const { validateTask, measureMaxLength } = await import('../data/tasks.ts');
  const evaluation = compileJobEvaluation(
    {
      ...(flags.lengthRange === undefined ? {} : { lengthRange: flags.lengthRange }),
      ...(flags.perLength === undefined ? {} : { perLength: flags.perLength }),
      ...(lengthTask === undefined ? {} : { lengthTask }),
    },
    task,
    model,
    { validate: validateTask, maxLength: (t) => measureMaxLength(t, 500) },
    failWithFlags,
  );
  const { lengthRange, perLength } = evaluation;
  return {
    model,
    ...(lengthRange === undefined ? {} : { lengthRange }),
    ...(perLength === undefined ? {} : { perLength }),
  };
}

/** The job the flags describe. */
async function newJob(flags: TrainFlags): Promise<JobSpec> {
  const { buildJobSpec } = await import('../train/job.ts');
  if (flags.pe === undefined) throw new InvalidArgumentError(`--pe is required (one of ${ENCODINGS.join(', ')})`);
  if (!(ENCODINGS as readonly string[]).includes(flags.pe))
    throw new InvalidArgumentError(`--pe must be one of ${ENCODINGS.join(', ')}, got '${flags.pe}'`);
  const task = taskFromFlags(flags);
  const lengthTask: TaskSpec | undefined =
    flags.lengthDigits === undefined
      ? undefined
      : {
          name: task.name,
          params: { ...task.params, minDigits: flags.lengthDigits[0], maxDigits: flags.lengthDigits[1] },
        };
  const { model, lengthRange, perLength } = await modelAndLengthSets(flags, task, lengthTask);
  return buildJobSpec({
    encoding: flags.pe as EncodingName,
    task,
    preset: flags.preset,
    model,
    seed: flags.seed,
    steps: flags.steps,
    batchSize: flags.batch,
    learningRate: flags.lr,
    ...(flags.warmup === undefined ? {} : { warmupSteps: flags.warmup }),
    weightDecay: flags.weightDecay,
    clipNorm: flags.clip,
    evalSamples: flags.evalSamples,
    ...(lengthTask === undefined ? {} : { lengthTask }),
    ...(flags.lengthSamples === undefined ? {} : { lengthSamples: flags.lengthSamples }),
    ...(lengthRange === undefined ? {} : { lengthRange }),
    ...(perLength === undefined ? {} : { perLength }),
    checkpointEvery: flags.checkpointEvery,
  });
}

/** The first SIGINT/SIGTERM asks the run to stop after this step (with a checkpoint); a second quits at once. */
function stopOnSignal(log: (line: string) => void): { readonly requested: boolean; release(): void } {
  let requested = false;
  const onSignal = (): void => {
    if (requested) process.exit(130);
    requested = true;
    log('\nstopping after this step: writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    get requested() {
      return requested;
    },
    release() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

function logEvaluation(e: Evaluation, out: string, log: (line: string) => void): void {
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  log(
    `done: ${e.steps} steps in ${formatDuration(e.wallTimeS)} on ${e.backend}, ${Math.round(e.tokensPerSecond)} tok/s; ` +
      `exact match ${pct(e.exactMatch)}, symbolic ${pct(e.symbolicAccuracy)}` +
      (e.stepAccuracy === null ? '' : `, steps ${pct(e.stepAccuracy)}`),
  );
  log(`wrote ${out}/evaluation.json, ${out}/final_model/model.ckpt, ${out}/metrics.jsonl`);
}

/** Exact match per operand length over --length-range, and the longest length that reaches 90%. */
function logPerLength(e: Evaluation, spec: JobSpec, log: (line: string) => void): void {
  const range = spec.evaluation.lengthRange;
  if (range === undefined) return;
  const pct = (x: number | undefined): string => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);
  log(`per-length exact match (operand digits ${range[0]}-${range[1]}; test and length problems pooled):`);
  log('  digits  exact   digit acc  problems');
  for (let length = range[0]; length <= range[1]; length++) {
    const b = e.perLength[String(length)];
    log(
      `  ${String(length).padStart(6)}  ${pct(b?.exactMatch).padStart(6)}  ${pct(b?.digitAccuracy).padStart(9)}  ${String(b?.n ?? 0).padStart(8)}`,
    );
  }
  const longest = e.longestLength90;
  log(
    `longest length with >= 90% exact match: ${longest === null || longest === undefined ? 'none' : `${longest} digits`}`,
  );
}

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description(
      'train one model in this process and evaluate it (checkpoints, final model and evaluation.json under --out)',
    )
    .option('--pe <encoding>', `positional encoding: ${ENCODINGS.join(', ')}`)
    .option('--task <name>', 'addition, multiplication, arithmetic, word_problems', 'addition')
    .option('--preset <name>', 'model preset from configs/presets.json: tiny, small, base', 'tiny')
    .option('--steps <n>', 'training steps', int('--steps'), 2000)
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'seed for weights, data and dropout', int('--seed', 0), 1)
    .option('--batch <n>', 'batch size', int('--batch'), 64)
    .option('--lr <x>', 'peak learning rate', positive('--lr'), 1e-3)
    .option('--warmup <n>', 'warmup steps (default: min(200, steps/10))', int('--warmup', 0))
    .option('--weight-decay <x>', 'AdamW weight decay', positive('--weight-decay'), 0.01)
    .option('--clip <x>', 'global gradient-norm clip (0: off)', positive('--clip'), 1)
    .option('--backend <name>', 'tensorflow-gpu, tensorflow, wasm or cpu (default: best that loads)')
    .option('--data <file.jsonl>', 'train on your own JSONL data (GSM8K {question, answer} or {prompt, target})')
    .option('--format <f>', 'JSONL format: gsm8k or plain (default: detected)')
    .option('--holdout <x>', 'JSONL fraction held out for evaluation', positive('--holdout'))
    .option('--checkpoint-every <n>', 'write a checkpoint every n steps (0: none)', int('--checkpoint-every', 0), 500)
    .option('--resume <file>', 'resume exactly from a checkpoint (the job comes from the file)')
    .option('--digits <a-b>', 'operand digits for addition/multiplication, e.g. 1-3', range('--digits'))
    .option('--reverse', 'write answers reversed (least significant digit first)')
    .option('--spaced', 'a space between every two characters of prompt and answer ("1 2 + 3 4 =" -> "4 6")')
    .option('--space-digits', 'a space between the digits of each operand ("1 2+3 4=" -> "46")')
    .option('--ops <a-b>', 'operators per arithmetic expression, e.g. 1-3', range('--ops'))
    .option('--max-value <n>', 'largest number in arithmetic and word problems', int('--max-value'))
    .option('--param <key=value>', 'any other task parameter (repeatable)', collect, [])
    .option('--eval-samples <n>', 'held-out in-distribution problems to evaluate', int('--eval-samples', 0), 200)
    .option(
      '--length-digits <a-b>',
      'also evaluate length generalization on operands of these digits',
      range('--length-digits'),
    )
    .option('--length-samples <n>', 'problems in the length-generalization set', int('--length-samples', 0))
    .option(
      '--length-range <a-b>',
      'also evaluate every operand length from a to b (addition, multiplication: the task in its own format)',
      range('--length-range'),
    )
    .option('--per-length <n>', 'held-out problems per length of --length-range (default 500)', int('--per-length'))
    .option('--model <key=value>', 'a model field over the preset, e.g. mapeRelative=false (repeatable)', collect, [])
    .option('--progress <mode>', 'auto, bar or plain', 'auto')
    .action(async (flags: TrainFlags, command: Command) => {
      try {
        await train(flags, command);
      } catch (error) {
        const e = error as { name?: string; message?: string; retryable?: boolean };
        process.stderr.write(`\npe-arena train: ${e.name ?? 'Error'}: ${e.message ?? String(error)}\n`);
        process.exitCode =
          error instanceof InvalidArgumentError || e.name === 'TrainConfigError' || e.name === 'DataError' ? 2 : 1;
      }
    });
}
