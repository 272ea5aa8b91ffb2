import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJsonl } from '../../src/data/jsonl.ts';
import { createSource } from '../../src/data/tasks.ts';
import { DataError } from '../../src/data/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'pe-arena-jsonl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n'));
  return path;
}

const gsm = (q: string, a: string): string => JSON.stringify({ question: q, answer: a });

void test('GSM8K lines: steps then "#### x"; answer, length (steps) and prompt are derived', async () => {
  const path = file('gsm.jsonl', [
    gsm(
      'Natalia sold 48 clips in April and half as many in May. How many in all?',
      'In May: 48/2 = <<48/2=24>>24\nIn all: 48+24 = <<48+24=72>>72\n#### 72',
    ),
    '',
    gsm('What is 2+2?', '2+2=4\r\n#### 4'),
  ]);
  const ex = await loadJsonl(path);
  assert.equal(ex.length, 2);
  assert.equal(ex[0]?.answer, '72');
  assert.equal(ex[0]?.length, 2);
  assert.equal(ex[0]?.prompt.endsWith('\n'), true);
  assert.equal(ex[0]?.id, 'gsm.jsonl:1');
  assert.equal(ex[1]?.id, 'gsm.jsonl:3', 'blank lines are skipped but keep line numbers');
  assert.equal(ex[1]?.answer, '4');
  const stripped = await loadJsonl(path, 'gsm8k', { stripAnnotations: true });
  assert.equal(stripped[0]?.target, 'In May: 48/2 = 24\nIn all: 48+24 = 72\n#### 72');
});

void test('plain lines: prompt/target, optional length, format auto-detected', async () => {
  const path = file('plain.jsonl', [
    JSON.stringify({ prompt: '123+45=', target: '168' }),
    JSON.stringify({ prompt: 'sort 3 1 2', target: '1 2 3', length: 3 }),
  ]);
  const ex = await loadJsonl(path);
  assert.deepEqual(
    ex.map((e) => [e.prompt, e.target, e.answer, e.length]),
    [
      ['123+45=', '168', '168', 3],
      ['sort 3 1 2', '1 2 3', '1 2 3', 3],
    ],
  );
});

async function rejects(lines: string[], pattern: RegExp, line: number, format?: 'gsm8k' | 'plain'): Promise<void> {
  const path = file(`bad-${Math.random().toString(36).slice(2)}.jsonl`, lines);
  await assert.rejects(loadJsonl(path, format), (e: unknown) => {
    assert.ok(e instanceof DataError, String(e));
    assert.equal(e.file, path);
    assert.equal(e.line, line);
    assert.ok(e.message.startsWith(`${path}:${line}: `), e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

void test('a malformed line throws a DataError naming file:line and what was wrong', async () => {
  const ok = gsm('q', 'a\n#### 1');
  await rejects([ok, '{"question": "q", "answer": ', ok], /invalid JSON/, 2);
  await rejects([ok, ok, '[1, 2]'], /expected a JSON object/, 3);
  await rejects([ok, gsm('q', 'no final answer')], /must end with "#### <final answer>"/, 2);
  await rejects([ok, JSON.stringify({ question: 'q' })], /"answer" must be a non-empty string/, 2);
  await rejects(
    [ok, JSON.stringify({ prompt: 'p', target: 't' })],
    /"question" must be a non-empty string \(gsm8k format\)/,
    2,
  );
  await rejects(
    [JSON.stringify({ prompt: 'p', target: 't', length: -1 })],
    /"length" must be a non-negative integer/,
    1,
  );
  await rejects([JSON.stringify({ foo: 1 })], /expected \{"question", "answer"\}/, 1);
  await rejects([JSON.stringify({ prompt: 'p', target: 't' })], /"question"/, 1, 'gsm8k');
});

void test('a missing or empty file is a DataError naming the file', async () => {
  await assert.rejects(
    loadJsonl(join(dir, 'missing.jsonl')),
    (e: unknown) => e instanceof DataError && e.message.includes('missing.jsonl'),
  );
  await assert.rejects(loadJsonl(file('empty.jsonl', ['', ''])), /no examples/);
  assert.throws(
    () => createSource({ name: 'jsonl', params: { path: join(dir, 'missing.jsonl') } }, 1, 'train'),
    DataError,
  );
});

void test('jsonl source: seeded shuffle, every line once per epoch, exact resume, held-out split', () => {
  const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `${i}+1=`, target: String(i + 1) }));
  const path = file('many.jsonl', lines);
  const task = { name: 'jsonl', params: { path } };
  const a = createSource(task, 1, 'train');
  const firstEpoch = Array.from({ length: 200 }, () => a.next().prompt);
  const trainSet = new Set(firstEpoch);
  const poolSize = trainSet.size;
  assert.ok(poolSize > 25 && poolSize < 40, `train pool ${poolSize}`);
  assert.equal(new Set(firstEpoch.slice(0, poolSize)).size, poolSize, 'each line once per epoch');
  assert.notDeepEqual(firstEpoch.slice(0, poolSize), firstEpoch.slice(poolSize, 2 * poolSize), 'reshuffled each epoch');
  const b = createSource(task, 1, 'train');
  assert.deepEqual(
    Array.from({ length: 200 }, () => b.next().prompt),
    firstEpoch,
    'deterministic',
  );
  const other = createSource(task, 2, 'train');
  assert.notDeepEqual(
    Array.from({ length: poolSize }, () => other.next().prompt),
    firstEpoch.slice(0, poolSize),
    'another seed, another order',
  );
  // Resume at a boundary and mid-epoch.
  for (const at of [poolSize, poolSize + 3, 7]) {
    const s = createSource(task, 1, 'train');
    for (let i = 0; i < at; i++) s.next();
    const state = structuredClone(s.getState());
    const fresh = createSource(task, 1, 'train');
    fresh.setState(state);
    assert.deepEqual(
      Array.from({ length: 60 }, () => fresh.next().prompt),
      firstEpoch.slice(at, at + 60),
      `resume at ${at}`,
    );
  }
  const test = createSource(task, 1, 'test');
  const testSet = new Set(Array.from({ length: 50 }, () => test.next().prompt));
  assert.equal(testSet.size + poolSize, 40);
  for (const p of testSet) assert.ok(!trainSet.has(p));
  // holdout 0: both splits see every line.
  const all = createSource({ name: 'jsonl', params: { path, holdout: 0 } }, 1, 'test');
  assert.equal(new Set(Array.from({ length: 40 }, () => all.next().prompt)).size, 40);
});
