// Loads the user's own problems from JSON Lines: GSM8K form {"question", "answer"} (answer = steps then
// "#### x") or plain {"prompt", "target"} (optional integer "length" for length buckets). The format is
// detected from the first record unless given; every record must then match it. A bad line throws a
// DataError naming file:line and what was wrong; blank lines are skipped.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { DataError } from './errors.ts';
import type { Example } from './types.ts';

export type JsonlFormat = 'gsm8k' | 'plain';
export const JSONL_FORMATS = ['gsm8k', 'plain'] as const;

export interface JsonlOptions {
  /** Drop GSM8K calculator annotations ("48/2 = <<48/2=24>>24" -> "48/2 = 24"): shorter targets for small maxLen. */
  stripAnnotations?: boolean;
}

export async function loadJsonl(file: string, format?: JsonlFormat, options: JsonlOptions = {}): Promise<Example[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new DataError(`${file}: cannot read (${(cause as Error).message})`, { cause, file });
  }
  return parseJsonl(text, file, format, options);
}

/** Synchronous form, for createSource (which is synchronous so a stream can be built anywhere). */
export function loadJsonlSync(file: string, format?: JsonlFormat, options: JsonlOptions = {}): Example[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new DataError(`${file}: cannot read (${(cause as Error).message})`, { cause, file });
  }
  return parseJsonl(text, file, format, options);
}

/** The text after the last "####" (GSM8K's final answer), trimmed; undefined when there is none. */
export function answerAfterHashes(text: string): string | undefined {
  const i = text.lastIndexOf('####');
  return i < 0 ? undefined : (text.slice(i + 4).split('\n')[0] ?? '').trim();
}

export function parseJsonl(text: string, file: string, format?: JsonlFormat, options: JsonlOptions = {}): Example[] {
  const examples: Example[] = [];
  const name = basename(file);
  let detected = format;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] ?? '').replace(/\r$/, '');
    if (raw.trim() === '') continue;
    const line = i + 1;
    const fail = (what: string, cause?: unknown): never => {
      throw new DataError(`${file}:${line}: ${what}`, { file, line, ...(cause === undefined ? {} : { cause }) });
    };
    let record: unknown;
    try {
      record = JSON.parse(raw);
    } catch (cause) {
      fail(`invalid JSON (${(cause as Error).message})`, cause);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) fail('expected a JSON object');
    const r = record as Record<string, unknown>;
    if (detected === undefined) {
      if ('question' in r || 'answer' in r) detected = 'gsm8k';
      else if ('prompt' in r || 'target' in r) detected = 'plain';
      else fail('expected {"question", "answer"} (GSM8K) or {"prompt", "target"} (plain)');
    }
    const [promptKey, targetKey] = detected === 'gsm8k' ? ['question', 'answer'] : ['prompt', 'target'];
    const prompt = r[promptKey as string];
    const target = r[targetKey as string];
    if (typeof prompt !== 'string' || prompt.trim() === '')
      fail(`"${promptKey}" must be a non-empty string (${detected} format)`);
    if (typeof target !== 'string' || target.trim() === '')
      fail(`"${targetKey}" must be a non-empty string (${detected} format)`);
    const p = prompt as string;
    const t =
      options.stripAnnotations === true
        ? (target as string).replace(/<<[^<>\n]*>>/g, '').trim()
        : (target as string).trim();
    const afterHashes = answerAfterHashes(t);
    if (detected === 'gsm8k' && (afterHashes === undefined || afterHashes === '')) {
      fail('GSM8K "answer" must end with "#### <final answer>"');
    }
    let length: number;
    if (detected === 'gsm8k') {
      length = stepLines(t);
    } else if (r.length !== undefined) {
      if (typeof r.length !== 'number' || !Number.isInteger(r.length) || r.length < 0)
        fail('"length" must be a non-negative integer');
      length = r.length as number;
    } else {
      // Operand digits, as the generators count it: the longest run of digits in the prompt.
      length = Math.max(0, ...Array.from(p.matchAll(/\d+/g), (m) => m[0].length));
    }
    examples.push({
      id: `${name}:${line}`,
      task: 'jsonl',
      // GSM8K questions get a newline so the steps start on their own line, as in the word problems.
      prompt: detected === 'gsm8k' ? `${p.trim()}\n` : p,
      target: t,
      answer: afterHashes ?? t,
      length,
    });
  }
  if (examples.length === 0) throw new DataError(`${file}: no examples (the file is empty)`, { file });
  return examples;
}

/** Non-empty lines before "####": the reasoning steps of a GSM8K answer. */
function stepLines(target: string): number {
  const i = target.lastIndexOf('####');
  return target
    .slice(0, i < 0 ? target.length : i)
    .split('\n')
    .filter((s) => s.trim() !== '').length;
}
