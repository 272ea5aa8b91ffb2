// The task registry: validates a TaskSpec and turns it into a seeded, resumable ExampleSource.
//
// Tasks (max chars of prompt + target at default params; add 2 tokens if the model wraps in BOS/EOS):
//   addition        {minDigits=1, maxDigits=3, reverse=false}   "123+45=" -> "168" (reverse: "861"); 12 chars
//   multiplication  {minDigits=1, maxDigits=3, reverse=false}   "12*34=" -> "408"; 14 chars
//                   both also take the formats padOperands, padAnswer, reverseAll (arithmetic.ts formatBinary)
//   arithmetic      {minOps=1, maxOps=3, maxValue=20}           "3*4+5=\n" -> "3*4=12\n12+5=17\n#### 17"; 61 chars
//   word_problems   {maxValue=20, minSteps=1, maxSteps=10, templates?: "rate,totals,..."}  GSM8K form; 146 chars
//   jsonl           {path, format?: 'gsm8k'|'plain', holdout=0.1, stripAnnotations=false}  the user's file,
//                   reshuffled every epoch; stripAnnotations drops GSM8K "<<a*b=c>>" calculator notes
// length: operand digits of the longest operand (addition, multiplication), operators (arithmetic), steps
// (word_problems, GSM8K jsonl), the "length" field or longest digit run of the prompt (plain jsonl).
//
// Held out: a problem belongs to the test part when a hash of its prompt (for addition and multiplication,
// of the unordered operand pair, so a+b and b+a share a split) falls in the holdout fraction
// (0.1 for generators, `holdout` for jsonl). The train stream never yields test problems and the test
// stream yields only them, from a seed derived from the job seed, so test problems are unseen in training.
// jsonl with holdout=0 keeps no test part: both splits draw every line (in different orders); use it for a
// separate test file, e.g. EvaluationSpec.lengthTask = {name: 'jsonl', params: {path: 'long.jsonl', holdout: 0}}.
//
// Length generalization is just a second TaskSpec evaluated with split 'test', e.g.
//   train: {name: 'addition', params: {minDigits: 1, maxDigits: 8}}
//   test:  {name: 'addition', params: {minDigits: 9, maxDigits: 16}}   (EvaluationSpec.lengthTask)
// (word_problems: train {maxSteps: 2}, test {minSteps: 3, maxSteps: 5}; arithmetic: by minOps/maxOps.)
import { existsSync } from 'node:fs';
import type { TaskSpec } from '../../protocol/messages.ts';
import { addition, arithmetic, multiplication } from './arithmetic.ts';
import { DataError } from './errors.ts';
import { isHeldOut, splitSeed } from './holdout.ts';
import { JSONL_FORMATS, loadJsonlSync, type JsonlFormat } from './jsonl.ts';
import { checkParams, stringParam, withDefaults, type ParamValues } from './params.ts';
import type { Generator } from './problem.ts';
import { Rng, type RngState } from './rng.ts';
import type { Example, ExampleSource, SourceState } from './types.ts';
import { wordProblems } from './word-problems.ts';

export const TASK_NAMES = ['addition', 'multiplication', 'arithmetic', 'word_problems', 'jsonl'] as const;
export type TaskName = (typeof TASK_NAMES)[number];
export type Split = 'train' | 'test';

/** Fraction of each generator's problem space kept for the test split. */
export const GENERATOR_HOLDOUT = 0.1;
/** Draws per example before giving up on finding a problem of the wanted split (tiny spaces). */
const MAX_TRIES = 10_000;

const GENERATORS: Record<Exclude<TaskName, 'jsonl'>, Generator> = {
  addition,
  multiplication,
  arithmetic,
  word_problems: wordProblems,
};

const jsonlSchema = {
  path: { kind: 'string', required: true },
  format: { kind: 'string', choices: JSONL_FORMATS },
  holdout: { kind: 'number', min: 0, max: 1, default: 0.1 },
  stripAnnotations: { kind: 'bool', default: false },
} as const;

function isTaskName(name: string): name is TaskName {
  return (TASK_NAMES as readonly string[]).includes(name);
}

/** Every problem with a task config, each naming its field; empty when the task is valid. */
export function validateTask(task: unknown): string[] {
  if (typeof task !== 'object' || task === null || Array.isArray(task))
    return ['task: must be an object {name, params}'];
  const { name, params } = task as { name?: unknown; params?: unknown };
  if (typeof name !== 'string' || !isTaskName(name)) {
    return [`task.name: unknown task ${JSON.stringify(name)} (known: ${TASK_NAMES.join(', ')})`];
  }
  const p = params ?? {};
  if (name === 'jsonl') {
    const errors = checkParams(p, jsonlSchema);
    const path = (p as Record<string, unknown>).path;
    if (errors.length === 0 && typeof path === 'string' && !existsSync(path))
      errors.push(`task.params.path: file not found: ${path}`);
    return errors;
  }
  const generator = GENERATORS[name];
  const errors = checkParams(p, generator.schema);
  if (errors.length > 0 || generator.check === undefined) return errors;
  return generator.check(withDefaults(p as TaskSpec['params'], generator.schema));
}

/** The task's params with defaults filled in; throws DataError when the task is invalid. */
export function resolveTask(task: TaskSpec): { name: TaskName; params: ParamValues } {
  const errors = validateTask(task);
  if (errors.length > 0) throw new DataError(`invalid task: ${errors.join('; ')}`, { field: fieldOf(errors[0]) });
  const name = task.name as TaskName;
  const schema = name === 'jsonl' ? jsonlSchema : GENERATORS[name].schema;
  return { name, params: withDefaults(task.params ?? {}, schema) };
}

function fieldOf(error: string | undefined): string {
  return error?.split(':')[0] ?? 'task';
}

/**
 * A deterministic stream: the same (task, seed, split) always yields the same examples, and
 * getState/setState resume it exactly. Throws DataError for an unknown task, bad params or a bad file.
 */
export function createSource(task: TaskSpec, seed: number, split: Split): ExampleSource {
  if (split !== 'train' && split !== 'test')
    throw new DataError(`split must be 'train' or 'test' (got ${JSON.stringify(split)})`, { field: 'split' });
  if (!Number.isSafeInteger(seed)) throw new DataError(`seed must be an integer (got ${seed})`, { field: 'seed' });
  const { name, params } = resolveTask(task);
  const rngSeed = splitSeed(seed, split);
  if (name === 'jsonl') return jsonlSource(params, rngSeed, split);
  return new GeneratorSource(name, GENERATORS[name], params, rngSeed, seed, split);
}

function checkState(state: unknown): SourceState {
  const s = state as Partial<SourceState> | null;
  const ok =
    typeof s === 'object' &&
    s !== null &&
    Array.isArray(s.rng) &&
    s.rng.length === 4 &&
    // int32 words are accepted too: Rng states saved before getState normalized them to uint32.
    s.rng.every((x) => Number.isInteger(x) && x >= -0x80000000 && x <= 0xffffffff) &&
    Number.isInteger(s.position) &&
    (s.position as number) >= 0;
  if (!ok)
    throw new DataError('invalid source state: expected {rng: four 32-bit integers, position: non-negative integer}', {
      field: 'state',
    });
  return { rng: [...(s.rng as RngState)] as RngState, position: s.position as number };
}

class GeneratorSource implements ExampleSource {
  private rng: Rng;
  private position = 0;

  constructor(
    readonly task: TaskName,
    private readonly generator: Generator,
    private readonly params: ParamValues,
    rngSeed: number,
    private readonly seed: number,
    private readonly split: Split,
  ) {
    this.rng = new Rng(rngSeed);
  }

  next(): Example {
    const wantTest = this.split === 'test';
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const problem = this.generator.generate(this.rng, this.params);
      const { holdoutKey, ...fields } = problem;
      if (isHeldOut(holdoutKey ?? problem.prompt, GENERATOR_HOLDOUT) !== wantTest) continue;
      const id = `${this.task}:${this.split}:${this.seed}:${this.position}`;
      this.position++;
      return { id, task: this.task, ...fields };
    }
    throw new DataError(
      `${this.task}: no ${this.split} problem found in ${MAX_TRIES} draws; the problem space is too small to hold some out (widen the params)`,
      { field: 'task.params' },
    );
  }

  getState(): SourceState {
    return { rng: this.rng.getState(), position: this.position };
  }

  setState(state: SourceState): void {
    const s = checkState(state);
    this.rng = new Rng(s.rng);
    this.position = s.position;
  }
}

/** Walks the file's examples of this split in a fresh seeded shuffle each epoch. */
function jsonlSource(params: ParamValues, rngSeed: number, split: Split): ExampleSource {
  const path = stringParam(params, 'path') ?? '';
  const format = stringParam(params, 'format') as JsonlFormat | undefined;
  const holdout = params.holdout as number;
  const all = loadJsonlSync(path, format, { stripAnnotations: params.stripAnnotations === true });
  const pool = holdout === 0 ? all : all.filter((e) => isHeldOut(e.prompt, holdout) === (split === 'test'));
  if (pool.length === 0) {
    throw new DataError(`${path}: no ${split} examples with holdout ${holdout} (${all.length} lines in the file)`, {
      field: 'task.params.holdout',
      file: path,
    });
  }
  let rng = new Rng(rngSeed);
  // The rng state before this epoch's shuffle: with the position, it rebuilds the order exactly.
  let epochStart: RngState = rng.getState();
  let order: number[] | null = null;
  let position = 0;
  const shuffle = (): number[] => {
    const idx = pool.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
    }
    return idx;
  };
  return {
    task: 'jsonl',
    next(): Example {
      const k = position % pool.length;
      if (k === 0 || order === null) {
        epochStart = rng.getState();
        order = shuffle();
      }
      position++;
      // A copy: callers may annotate examples without changing the pool for later epochs.
      return { ...(pool[order[k] as number] as Example) };
    },
    getState(): SourceState {
      const atBoundary = position % pool.length === 0;
      return { rng: atBoundary ? rng.getState() : ([...epochStart] as RngState), position };
    },
    setState(state: SourceState): void {
      const s = checkState(state);
      position = s.position;
      rng = new Rng(s.rng);
      epochStart = s.rng;
      order = position % pool.length === 0 ? null : shuffle();
    },
  };
}

/**
 * Held-out test sets per operand length (addition, multiplication): for each length L, up to `perLength`
 * distinct problems of the test split whose longer operand has L digits (the other uniform in [minDigits, L], as in
 * training; both L digits with `sameLength`), format params kept. Seeded by the job seed like the test split, so
 * none was seen in training and the same seed gives the same sets.
 */
export function lengthTestSets(
  task: TaskSpec,
  lengths: readonly number[],
  perLength: number,
  seed: number,
  options: { sameLength?: boolean } = {},
): Map<number, Example[]> {
  if (task.name !== 'addition' && task.name !== 'multiplication')
    throw new DataError(`lengthTestSets: ${task.name} has no operand length (addition, multiplication)`, {
      field: 'task.name',
    });
  const sets = new Map<number, Example[]>();
  for (const length of lengths) {
    const params = {
      ...task.params,
      minDigits: options.sameLength === true ? length : Math.min(Number(task.params['minDigits'] ?? 1), length),
      maxDigits: length,
    };
    const source = createSource({ name: task.name, params }, seed, 'test');
    const out: Example[] = [];
    const seen = new Set<string>();
    // Bounded: small lengths hold fewer distinct test problems than asked for.
    for (let draws = 0; out.length < perLength && draws < perLength * 40; draws++) {
      const e = source.next();
      if (e.length !== length || seen.has(e.prompt)) continue;
      seen.add(e.prompt);
      out.push({ ...e, id: `${e.id}:len${length}` });
    }
    sets.set(length, out);
  }
  return sets;
}

/**
 * How a task writes its numbers, for encodings that read digit significance (mape): the addition and
 * multiplication answer least-significant first with `reverse`, every number with `reverseAll`; other tasks
 * most-significant first.
 */
export function taskNumberOrder(task: TaskSpec): { operands: 'msb' | 'lsb'; answer: 'msb' | 'lsb' } {
  const p = task.params;
  if (task.name !== 'addition' && task.name !== 'multiplication') return { operands: 'msb', answer: 'msb' };
  if (p['reverseAll'] === true) return { operands: 'lsb', answer: 'lsb' };
  return { operands: 'msb', answer: p['reverse'] === true ? 'lsb' : 'msb' };
}

/**
 * n examples from a source; with unique, repeated prompts are skipped (bounded: at most 20n draws),
 * so a small space may give fewer than n. Use it for evaluation sets.
 */
export function drawExamples(source: ExampleSource, n: number, options: { unique?: boolean } = {}): Example[] {
  const out: Example[] = [];
  const seen = new Set<string>();
  for (let draws = 0; out.length < n && draws < (options.unique === true ? n * 20 : n); draws++) {
    const e = source.next();
    if (options.unique === true) {
      if (seen.has(e.prompt)) continue;
      seen.add(e.prompt);
    }
    out.push(e);
  }
  return out;
}

/**
 * The longest prompt + target (in characters = tokens, before BOS/EOS) over `samples` draws of the train
 * stream: a quick check that a model's maxLen fits the task (sampled, so a bound in practice, not a proof).
 */
export function measureMaxLength(task: TaskSpec, samples = 2000, seed = 0): number {
  const source = createSource(task, seed, 'train');
  let max = 0;
  for (let i = 0; i < samples; i++) {
    const e = source.next();
    max = Math.max(max, e.prompt.length + e.target.length);
  }
  return max;
}
