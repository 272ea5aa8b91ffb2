import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TaskSpec } from '../../protocol/messages.ts';
import { createSource, drawExamples, measureMaxLength, TASK_NAMES, validateTask } from '../../src/data/tasks.ts';
import { DataError } from '../../src/data/errors.ts';
import { TEMPLATE_NAMES } from '../../src/data/word-problems.ts';
import { tokenizer } from '../../src/data/tokenizer.ts';
import type { Example } from '../../src/data/types.ts';

const GENERATED: TaskSpec[] = [
  { name: 'addition', params: {} },
  { name: 'addition', params: { minDigits: 1, maxDigits: 8, reverse: true } },
  { name: 'multiplication', params: { minDigits: 1, maxDigits: 4 } },
  { name: 'arithmetic', params: {} },
  { name: 'word_problems', params: {} },
];

function take(task: TaskSpec, seed: number, split: 'train' | 'test', n: number): Example[] {
  const s = createSource(task, seed, split);
  return Array.from({ length: n }, () => s.next());
}

void test('every generator is deterministic per (task, seed, split) and differs across seeds and splits', () => {
  for (const task of GENERATED) {
    const a = take(task, 7, 'train', 50);
    assert.deepEqual(take(task, 7, 'train', 50), a, task.name);
    assert.notDeepEqual(
      take(task, 8, 'train', 50).map((e) => e.prompt),
      a.map((e) => e.prompt),
      `${task.name} seed`,
    );
    assert.notDeepEqual(
      take(task, 7, 'test', 50).map((e) => e.prompt),
      a.map((e) => e.prompt),
      `${task.name} split`,
    );
  }
});

void test('getState/setState resume every generator exactly, also in a fresh source', () => {
  for (const task of GENERATED) {
    const s = createSource(task, 3, 'train');
    for (let i = 0; i < 37; i++) s.next();
    const state = structuredClone(s.getState());
    assert.equal(state.position, 37);
    const expected = Array.from({ length: 20 }, () => s.next());
    const fresh = createSource(task, 3, 'train');
    fresh.setState(state);
    assert.deepEqual(
      Array.from({ length: 20 }, () => fresh.next()),
      expected,
      task.name,
    );
    s.setState(state);
    assert.deepEqual(s.next(), expected[0]);
  }
});

void test('setState rejects a malformed state with a DataError', () => {
  const s = createSource({ name: 'addition', params: {} }, 1, 'train');
  assert.throws(
    () => s.setState({ rng: [1, 2, 3] as unknown as [number, number, number, number], position: 0 }),
    DataError,
  );
  assert.throws(() => s.setState({ rng: [1, 2, 3, 4], position: -1 }), DataError);
});

void test('test problems are held out from the train stream (small space: 1-digit addition)', () => {
  const task = { name: 'addition', params: { minDigits: 1, maxDigits: 1 } };
  const train = new Set(take(task, 5, 'train', 3000).map((e) => e.prompt));
  const test = new Set(take(task, 5, 'test', 300).map((e) => e.prompt));
  assert.ok(train.size > 50 && test.size > 0, `train ${train.size} test ${test.size}`);
  for (const p of test) assert.ok(!train.has(p), `${p} is in both splits`);
  assert.equal(train.size + test.size, 100, 'together they cover the 100 problems');
  const swap = (p: string): string => p.replace(/^(\d+)\+(\d+)=$/, '$2+$1=');
  for (const p of test) assert.ok(!train.has(swap(p)), `${swap(p)} (swapped ${p}) is in train`);
});

void test('addition and multiplication answers are right (BigInt) for up to 16-digit operands', () => {
  for (const [name, op] of [
    ['addition', '+'],
    ['multiplication', '*'],
  ] as const) {
    for (const split of ['train', 'test'] as const) {
      for (const e of take({ name, params: { minDigits: 1, maxDigits: 16 } }, 11, split, 300)) {
        const m = /^(\d+)([+*])(\d+)=$/.exec(e.prompt);
        assert.ok(m, e.prompt);
        const [a, b] = [BigInt(m[1] ?? ''), BigInt(m[3] ?? '')];
        assert.equal(m[2], op);
        const want = (op === '+' ? a + b : a * b).toString();
        assert.equal(e.answer, want);
        assert.equal(e.target, want);
        assert.equal(e.length, Math.max((m[1] ?? '').length, (m[3] ?? '').length));
        assert.ok(!/^0\d/.test(m[1] ?? '') && !/^0\d/.test(m[3] ?? ''), 'no leading zeros');
      }
    }
  }
});

void test('reverse writes the answer digits backwards; answer stays in reading order', () => {
  for (const e of take({ name: 'addition', params: { minDigits: 2, maxDigits: 5, reverse: true } }, 2, 'train', 100)) {
    assert.equal(e.reversed, true);
    assert.equal(e.target, [...e.answer].reverse().join(''));
  }
  const plain = take({ name: 'addition', params: { minDigits: 2, maxDigits: 5 } }, 2, 'train', 5);
  assert.ok(plain.every((e) => e.reversed === undefined && e.target === e.answer));
});

void test('spaced puts a space between every two characters; the problems and the split are the unspaced ones', () => {
  const params = { minDigits: 3, maxDigits: 3, reverse: true };
  for (const split of ['train', 'test'] as const) {
    const spaced = take({ name: 'addition', params: { ...params, spaced: true } }, 5, split, 50);
    const plain = take({ name: 'addition', params }, 5, split, 50);
    spaced.forEach((e, i) => {
      const p = plain[i] as Example;
      assert.equal(e.spaced, true);
      assert.equal(e.prompt, [...p.prompt].join(' '));
      assert.equal(e.target, [...p.target].join(' '));
      assert.equal(e.answer, p.answer);
      assert.match(e.prompt, /^\d \d \d \+ \d \d \d =$/);
    });
    assert.ok(plain.every((e) => e.spaced === undefined));
  }
});

void test('spaceDigits spaces each operand alone; operators and answer unspaced; problems and split unchanged', () => {
  const params = { minDigits: 3, maxDigits: 3, reverse: true };
  for (const split of ['train', 'test'] as const) {
    const spaced = take({ name: 'addition', params: { ...params, spaceDigits: true } }, 5, split, 50);
    const plain = take({ name: 'addition', params }, 5, split, 50);
    spaced.forEach((e, i) => {
      const p = plain[i] as Example;
      assert.equal(e.spaced, true);
      assert.equal(
        e.prompt,
        p.prompt.replace(/\d+/g, (n) => [...n].join(' ')),
      );
      assert.match(e.prompt, /^\d \d \d\+\d \d \d=$/);
      assert.equal(e.target, p.target);
      assert.equal(e.answer, p.answer);
    });
  }
});

void test('a length split is a second TaskSpec: train 1-8 digits, test 9-16 digits', () => {
  const train = take({ name: 'addition', params: { minDigits: 1, maxDigits: 8 } }, 4, 'train', 400);
  const test = take({ name: 'addition', params: { minDigits: 9, maxDigits: 16 } }, 4, 'test', 400);
  assert.ok(train.every((e) => e.length >= 1 && e.length <= 8));
  assert.ok(test.every((e) => e.length >= 9 && e.length <= 16));
  // The longest operand's length is uniform, so every bucket shows up.
  assert.equal(new Set(train.map((e) => e.length)).size, 8);
  assert.equal(new Set(test.map((e) => e.length)).size, 8);
});

function checkGsm8kSteps(e: Example): void {
  const lines = e.target.split('\n');
  const last = lines.pop() ?? '';
  assert.equal(last, `#### ${e.answer}`, e.target);
  assert.equal(lines.length, e.length);
  for (const line of lines) {
    const m = /(\d+(?:[-+*/]\d+)+)=(\d+)$/.exec(line);
    assert.ok(m, `step "${line}"`);
    // The left side only has integers and + - * /, so Function-free evaluation by precedence via BigInt is overkill:
    // these numbers are small, and / is exact by construction.
    const value = evalSimple(m[1] ?? '');
    assert.equal(value, Number(m[2]), line);
  }
}

function evalSimple(expr: string): number {
  const terms = expr.split(/(?=[-+])/);
  return terms.reduce((acc, term) => {
    const sign = term.startsWith('-') ? -1 : 1;
    const product = term
      .replace(/^[-+]/, '')
      .split(/(?=[*/])/)
      .reduce((p, f) => (f.startsWith('/') ? p / Number(f.slice(1)) : p * Number(f.replace('*', ''))), 1);
    return acc + sign * product;
  }, 0);
}

void test('arithmetic: steps in "a op b=c" form whose arithmetic is right, answer last, no negative values', () => {
  for (const e of take({ name: 'arithmetic', params: { minOps: 1, maxOps: 5, maxValue: 30 } }, 9, 'train', 300)) {
    checkGsm8kSteps(e);
    assert.ok(e.prompt.endsWith('=\n'));
    assert.equal(evalSimple(e.prompt.slice(0, -2)), Number(e.answer), e.prompt);
    assert.ok(!e.target.includes('=-'), 'no negative intermediate values');
  }
});

void test('word problems: at least 6 templates, GSM8K format, integer answers, every template reachable', () => {
  assert.ok(TEMPLATE_NAMES.length >= 6);
  const examples = take({ name: 'word_problems', params: {} }, 12, 'train', 600);
  for (const e of examples) {
    assert.ok(e.prompt.endsWith('\n'));
    assert.match(e.answer, /^\d+$/);
    checkGsm8kSteps(e);
  }
  // Each template has a distinctive phrase; all of them show up in 600 draws.
  const phrases = [
    'km per hour',
    'and a bag',
    'change?',
    'Cats to dogs',
    'equally among',
    'are left?',
    '% off',
    'the mean?',
    'liters a minute',
    'How many now?',
  ];
  for (const p of phrases)
    assert.ok(
      examples.some((e) => e.prompt.includes(p)),
      p,
    );
  const oneStep = take({ name: 'word_problems', params: { maxSteps: 1 } }, 1, 'train', 50);
  assert.ok(oneStep.every((e) => e.length === 1));
  // Length split by steps: longer chains only in the test task.
  const long = take({ name: 'word_problems', params: { minSteps: 3, maxSteps: 5 } }, 1, 'test', 100);
  assert.deepEqual([...new Set(long.map((e) => e.length))].sort(), [3, 4, 5]);
  long.forEach(checkGsm8kSteps);
  assert.match(
    validateTask({ name: 'word_problems', params: { minSteps: 4, maxSteps: 2 } })[0] ?? '',
    /task\.params\.maxSteps: must be >= minSteps/,
  );
});

void test('default-param examples fit the stated max lengths and round-trip through the tokenizer', () => {
  const limits: Record<string, number> = { addition: 12, multiplication: 14, arithmetic: 61, word_problems: 146 };
  for (const [name, limit] of Object.entries(limits)) {
    for (const e of take({ name, params: {} }, 21, 'train', 2000)) {
      assert.ok(e.prompt.length + e.target.length <= limit, `${name}: ${e.prompt}${e.target}`);
      assert.equal(tokenizer.decode(tokenizer.encode(e.prompt + e.target)), e.prompt + e.target);
    }
  }
});

void test('validateTask names the bad field; createSource throws DataError', () => {
  assert.deepEqual(validateTask({ name: 'addition', params: { minDigits: 2, maxDigits: 5 } }), []);
  assert.match(validateTask({ name: 'additon', params: {} })[0] ?? '', /task\.name: unknown task "additon"/);
  assert.match(
    validateTask({ name: 'addition', params: { maxDigits: 0 } })[0] ?? '',
    /task\.params\.maxDigits: must be an integer/,
  );
  assert.match(
    validateTask({ name: 'addition', params: { minDigits: 5, maxDigits: 2 } })[0] ?? '',
    /task\.params\.maxDigits: must be >= minDigits/,
  );
  assert.match(validateTask({ name: 'addition', params: { reverse: 'yes' } })[0] ?? '', /task\.params\.reverse/);
  assert.match(
    validateTask({ name: 'addition', params: { spaced: true, spaceDigits: true } })[0] ?? '',
    /task\.params\.spaceDigits: spaced already puts a space/,
  );
  assert.match(
    validateTask({ name: 'addition', params: { digits: 3 } })[0] ?? '',
    /task\.params\.digits: unknown parameter/,
  );
  assert.match(
    validateTask({ name: 'word_problems', params: { templates: 'rate,nope' } })[0] ?? '',
    /unknown template "nope"/,
  );
  assert.match(validateTask({ name: 'jsonl', params: {} })[0] ?? '', /task\.params\.path: required/);
  assert.match(
    validateTask({ name: 'jsonl', params: { path: '/nonexistent/x.jsonl' } })[0] ?? '',
    /task\.params\.path: file not found/,
  );
  assert.match(
    validateTask({ name: 'jsonl', params: { path: 'x', format: 'csv' } })[0] ?? '',
    /task\.params\.format: must be one of gsm8k, plain/,
  );
  assert.match(validateTask(null)[0] ?? '', /task: must be an object/);
  assert.equal(TASK_NAMES.length, 5);
  assert.throws(
    () => createSource({ name: 'addition', params: { maxDigits: 0 } }, 1, 'train'),
    (e: unknown) => e instanceof DataError && e.field === 'task.params.maxDigits' && !e.retryable,
  );
  assert.throws(() => createSource({ name: 'sorting', params: {} }, 1, 'train'), DataError);
});

void test('measureMaxLength reports the longest prompt + target', () => {
  assert.equal(measureMaxLength({ name: 'addition', params: { minDigits: 3, maxDigits: 3 } }, 500), 12);
  assert.ok(measureMaxLength({ name: 'arithmetic', params: {} }, 500) <= 61);
});

void test('drawExamples with unique skips repeats and stops on a small space', () => {
  const s = createSource({ name: 'addition', params: { minDigits: 1, maxDigits: 1 } }, 1, 'test');
  const got = drawExamples(s, 1000, { unique: true });
  assert.ok(got.length > 0 && got.length < 100);
  assert.equal(new Set(got.map((e) => e.prompt)).size, got.length);
  assert.equal(drawExamples(createSource({ name: 'addition', params: {} }, 1, 'train'), 10).length, 10);
});
