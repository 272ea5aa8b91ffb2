// Inference on trained models: load a final model (or checkpoint) blob, format a problem the way the model's
// task wrote its prompts, decode greedily, and pull out the answer, the arithmetic steps and the latency.
// TensorFlow.js is imported here, so callers that must stay free of it (the coordinator) import this lazily.
import type { JobSpec, TaskSpec } from '../../protocol/messages.ts';
import { BOS, EOS, tokenizer } from '../data/tokenizer.ts';
import { formatBinary, spaceOut } from '../data/arithmetic.ts';
import { extractSteps, type CheckedStep } from '../eval/steps.ts';
import { attentionMaps, greedyDecode } from '../model/decode.ts';
import type { Transformer } from '../model/transformer.ts';
import { selectBackend } from '../train/backend.ts';
import { loadModel } from '../train/tf-workload.ts';
import type { BackendName } from '../train/workload.ts';
import { readFile } from 'node:fs/promises';
import { ModelLoadError, TooLongError } from './errors.ts';

export interface LoadedModel {
  /** The name clients use (the encoding, or encoding/jobId when a run has several jobs per encoding). */
  name: string;
  encoding: string;
  jobId: string;
  job: JobSpec;
  step: number;
  file: string;
  model: Transformer;
  parameters: number;
}

export interface SolveResult {
  model: string;
  encoding: string;
  jobId: string;
  task: string;
  /** The problem as the model was given it (its task's format: padding, reversal, spacing). */
  prompt: string;
  /** What the model wrote after the prompt, in the model's format. */
  prediction: string;
  /** The final answer in ordinary digit order ("####" line when there is one, else the first line), no padding. */
  answer: string;
  steps: { text: string; correct: boolean }[];
  latencyMs: number;
  promptTokens: number;
  generatedTokens: number;
}

const ARITHMETIC_TASKS = new Set(['addition', 'multiplication', 'arithmetic']);
/** A plain two-operand problem as a user writes it (spaces already taken out): "48213+907" or "12*34=". */
const PLAIN_BINARY = /^(\d+)([+*])(\d+)$/;

/**
 * The prompt text the task's generator would have written for this problem. A plain "48213+907=" to an addition or
 * multiplication model is written in the model's format (padding, reversal, spacing: formatBinary), so a user never
 * formats by hand.
 */
export function formatPrompt(problem: string, task: TaskSpec): string {
  const text = problem.replace(/\r\n?/g, '\n');
  if (ARITHMETIC_TASKS.has(task.name)) {
    const compact = text.replace(/\s+/g, '').replace(/=+$/, '');
    const binary = PLAIN_BINARY.exec(compact);
    if (binary !== null && (task.name === 'addition' || task.name === 'multiplication')) {
      const ordinary = (digits: string): string => digits.replace(/^0+(?=\d)/, '');
      const [, a = '', op = '+', b = ''] = binary;
      return formatBinary(op as '+' | '*', ordinary(a), ordinary(b), task.params).prompt;
    }
    // Generators write "12+34=": no spaces, the '=' last; "1 2 + 3 4 =" when the task is spaced, "1 2+3 4=" when
    // it spaces the digits.
    if (task.params['spaced'] === true) return spaceOut(`${compact}=`);
    return task.params['spaceDigits'] === true ? `${compact}=`.replace(/\d+/g, spaceOut) : `${compact}=`;
  }
  // Word problems and GSM8K-style files end the question with a newline so the steps start on their own line.
  const trimmed = text.trim();
  return task.name === 'jsonl' && task.params['format'] === 'plain' ? trimmed : `${trimmed}\n`;
}

/** The final answer of a free-form prediction, in reading order. */
export function extractAnswer(prediction: string, reversed: boolean, spaced = false): string {
  const i = prediction.indexOf('####');
  const raw = i >= 0 ? (prediction.slice(i + 4).split('\n')[0] ?? '') : (prediction.trim().split('\n')[0] ?? '');
  const answer = spaced ? raw.replace(/ /g, '') : raw.trim();
  return reversed ? Array.from(answer).reverse().join('') : answer;
}

/** The answer of a prediction in ordinary digit order, as the task wrote it: reversal undone, padding zeros dropped. */
export function answerInOrder(prediction: string, task: TaskSpec): string {
  const p = task.params;
  const answer = extractAnswer(
    prediction,
    p['reverse'] === true || p['reverseAll'] === true,
    p['spaced'] === true || p['spaceDigits'] === true,
  );
  return p['padAnswer'] === true && /^\d+$/.test(answer) ? answer.replace(/^0+(?=\d)/, '') : answer;
}

let backendReady: Promise<unknown> | undefined;

/** Picks the TF.js backend once per process (the best that loads, or the one asked for). */
export function ensureBackend(backend?: BackendName, log?: (line: string) => void): Promise<unknown> {
  backendReady ??= selectBackend(backend, log);
  return backendReady;
}

export async function loadModelFile(file: string, name?: string, backend?: BackendName): Promise<LoadedModel> {
  await ensureBackend(backend);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (cause) {
    throw new ModelLoadError(`cannot read model ${file}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
  try {
    const { model, job, step } = loadModel(bytes);
    return {
      name: name ?? job.encoding,
      encoding: job.encoding,
      jobId: String(job.jobId),
      job,
      step,
      file,
      model,
      parameters: model.parameterCount(),
    };
  } catch (cause) {
    throw new ModelLoadError(`cannot load model ${file}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** Prompt ids (BOS first); throws TooLongError when no room is left to answer in. */
export function promptIds(m: LoadedModel, problem: string): number[] {
  const prompt = formatPrompt(problem, m.job.task);
  const ids = [BOS, ...tokenizer.encode(prompt)];
  const maxLen = m.job.model.maxLen;
  if (ids.length >= maxLen) {
    throw new TooLongError(
      `problem is ${ids.length} tokens with BOS; model ${m.name} takes at most ${maxLen - 1} so it has room to answer`,
    );
  }
  return ids;
}

export function solveWith(m: LoadedModel, problem: string, maxNewTokens?: number): SolveResult {
  const ids = promptIds(m, problem);
  const room = m.job.model.maxLen - ids.length;
  const started = performance.now();
  const [generated = []] = greedyDecode(m.model, [ids], {
    maxNewTokens: Math.min(room, maxNewTokens ?? room),
    eosId: EOS,
    batchSize: 1,
  });
  const latencyMs = performance.now() - started;
  const prediction = tokenizer.decode(generated);
  const steps: CheckedStep[] = extractSteps(prediction);
  return {
    model: m.name,
    encoding: m.encoding,
    jobId: m.jobId,
    task: m.job.task.name,
    prediction,
    prompt: tokenizer.decode(ids.slice(1)),
    answer: answerInOrder(prediction, m.job.task),
    steps: steps.map((s) => ({ text: s.text, correct: s.correct })),
    latencyMs,
    promptTokens: ids.length,
    generatedTokens: generated.length,
  };
}

export interface AttentionView {
  model: string;
  tokens: string[];
  /** Last layer, mean over heads: [query][key]. */
  weights: number[][];
  layers: number;
  heads: number;
}

/** Attention of the prompt followed by the model's own answer (so the map shows how it answered). */
export function attentionWith(m: LoadedModel, text: string, withAnswer = true): AttentionView {
  let ids = promptIds(m, text);
  if (withAnswer) {
    const room = m.job.model.maxLen - ids.length;
    const [generated = []] = greedyDecode(m.model, [ids], { maxNewTokens: room, eosId: EOS, batchSize: 1 });
    ids = [...ids, ...generated].slice(0, m.job.model.maxLen);
  }
  const maps = attentionMaps(m.model, ids);
  const last = maps[maps.length - 1] ?? [];
  const heads = last.length;
  const weights = ids.map((_, q) =>
    ids.map((__, k) => (heads === 0 ? 0 : last.reduce((a, h) => a + (h[q]?.[k] ?? 0), 0) / heads)),
  );
  const tokens = ids.map((id) => (id === BOS ? '<s>' : tokenizer.decode([id])));
  return { model: m.name, tokens, weights, layers: maps.length, heads };
}
