// The addition task's formats (padding, reversal), balanced operand lengths, and the per-length test sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBinary } from '../../src/data/arithmetic.ts';
import { isHeldOut } from '../../src/data/holdout.ts';
import {
  createSource,
  GENERATOR_HOLDOUT,
  lengthTestSets,
  taskNumberOrder,
  validateTask,
} from '../../src/data/tasks.ts';

void test('formatBinary writes the formats of the literature; the answer field stays ordinary', () => {
  const cases: [Record<string, boolean>, string, string][] = [
    [{}, '123+45=', '168'],
    [{ padOperands: true }, '123+045=', '168'],
    [{ padAnswer: true }, '123+45=', '0168'],
    [{ padOperands: true, padAnswer: true }, '123+045=', '0168'],
    [{ reverse: true }, '123+45=', '861'],
    [{ reverse: true, padAnswer: true }, '123+45=', '8610'],
    [{ reverseAll: true }, '321+54=', '861'],
    [{ reverseAll: true, padOperands: true, padAnswer: true }, '321+540=', '8610'],
    [{ reverseAll: true, spaceDigits: true }, '3 2 1+5 4=', '861'],
  ];
  for (const [params, prompt, target] of cases) {
    const p = formatBinary('+', '123', '45', params);
    assert.deepEqual([p.prompt, p.target, p.answer], [prompt, target, '168'], JSON.stringify(params));
    assert.equal(p.reversed === true, params.reverse === true || params.reverseAll === true);
    assert.equal(p.reversedOperands === true, params.reverseAll === true);
    assert.equal(p.padded === true, params.padOperands === true || params.padAnswer === true);
  }
  // A product's answer pads to the sum of the operands' digits.
  assert.equal(formatBinary('*', '12', '3', { padAnswer: true }).target, '036');
  assert.equal(formatBinary('*', '99', '99', { padAnswer: true }).target, '9801');
});

void test('the format params validate, default off, and set the digit order MAPE reads', () => {
  assert.deepEqual(validateTask({ name: 'addition', params: { padAnswer: true, reverseAll: true } }), []);
  assert.match(validateTask({ name: 'addition', params: { padAnswer: 1 } })[0] ?? '', /task\.params\.padAnswer/);
  // The default stays the plain format: no number has a leading zero, the answer reads in ordinary order.
  const plain = createSource({ name: 'addition', params: { maxDigits: 5 } }, 1, 'train');
  for (let i = 0; i < 200; i++) {
    const e = plain.next();
    assert.ok(!/(^|\D)0\d/.test(e.prompt + '=' + e.target), e.prompt + e.target);
    assert.equal(e.target, e.answer);
  }
  assert.deepEqual(taskNumberOrder({ name: 'addition', params: {} }), { operands: 'msb', answer: 'msb' });
  assert.deepEqual(taskNumberOrder({ name: 'addition', params: { reverse: true } }), {
    operands: 'msb',
    answer: 'lsb',
  });
  assert.deepEqual(taskNumberOrder({ name: 'multiplication', params: { reverseAll: true } }), {
    operands: 'lsb',
    answer: 'lsb',
  });
  assert.deepEqual(taskNumberOrder({ name: 'arithmetic', params: {} }), { operands: 'msb', answer: 'msb' });
});

void test('a format changes the text, never which problems are drawn nor their split', () => {
  const plain = createSource({ name: 'addition', params: { maxDigits: 5 } }, 3, 'train');
  const padded = createSource(
    { name: 'addition', params: { maxDigits: 5, padAnswer: true, reverseAll: true } },
    3,
    'train',
  );
  for (let i = 0; i < 200; i++) {
    const [a, b] = [plain.next(), padded.next()];
    assert.deepEqual([a.answer, a.length, a.id], [b.answer, b.length, b.id]);
  }
});

void test('training draws operand lengths balanced: the longer operand is uniform over 1-5 digits', () => {
  const source = createSource({ name: 'addition', params: { minDigits: 1, maxDigits: 5 } }, 2, 'train');
  const counts = new Map<number, number>();
  const n = 5000;
  for (let i = 0; i < n; i++) {
    const e = source.next();
    counts.set(e.length, (counts.get(e.length) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), [1, 2, 3, 4, 5]);
  // Length 1 has few train problems (some are held out), the rest are within a few percent of a fifth.
  for (const length of [2, 3, 4, 5]) {
    const share = (counts.get(length) ?? 0) / n;
    assert.ok(Math.abs(share - 0.2) < 0.03, `length ${length}: ${share}`);
  }
});

void test('lengthTestSets: per length 1-12, distinct held-out problems, seeded, none from the train split', () => {
  const task = { name: 'addition', params: { minDigits: 1, maxDigits: 5, padAnswer: true, reverse: true } };
  const lengths = Array.from({ length: 12 }, (_, i) => i + 1);
  const sets = lengthTestSets(task, lengths, 50, 7);
  assert.deepEqual([...sets.keys()], lengths);
  const ids = new Set<string>();
  for (const [length, examples] of sets) {
    // Length 1 holds only a handful of held-out problems; from 3 digits on there are plenty.
    if (length >= 3) assert.equal(examples.length, 50, `length ${length}`);
    assert.ok(examples.length > 0, `length ${length} is empty`);
    assert.equal(new Set(examples.map((e) => e.prompt)).size, examples.length);
    for (const e of examples) {
      assert.equal(e.length, length);
      assert.ok(e.target.length === length + 1, 'answers keep the task format (padded to n+1 digits)');
      const [a, b] = e.prompt.slice(0, -1).split('+') as [string, string];
      assert.equal(isHeldOut(a < b ? `${a}+${b}` : `${b}+${a}`, GENERATOR_HOLDOUT), true);
      ids.add(e.id);
    }
  }
  assert.equal(
    ids.size,
    [...sets.values()].reduce((s, e) => s + e.length, 0),
    'ids are unique across lengths',
  );
  assert.deepEqual(lengthTestSets(task, [4], 20, 7).get(4), sets.get(4)?.slice(0, 20));
  assert.notDeepEqual(lengthTestSets(task, [4], 20, 8).get(4), sets.get(4)?.slice(0, 20));
  const same = lengthTestSets(task, [6], 20, 7, { sameLength: true }).get(6) ?? [];
  assert.ok(same.every((e) => e.prompt.split('+').every((x) => x.replace('=', '').length === 6)));
  assert.throws(() => lengthTestSets({ name: 'arithmetic', params: {} }, [1], 5, 1), /operand length/);
});
