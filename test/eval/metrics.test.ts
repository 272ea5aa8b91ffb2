import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  attentionEntropy,
  digitAccuracy,
  longestPassingLength,
  mergeEntropy,
  predictedAnswer,
  scoreProblems,
} from '../../src/eval/metrics.ts';
import { EvalError } from '../../src/eval/errors.ts';
import { createSource } from '../../src/data/tasks.ts';
import type { Example } from '../../src/data/types.ts';

const ex = (over: Partial<Example>): Example => ({
  id: 'x',
  task: 't',
  prompt: 'p',
  target: '5',
  answer: '5',
  length: 1,
  ...over,
});

void test('exact match (whole target), answer match and symbolic accuracy, per problem and per length', () => {
  const examples = [
    ex({ id: 'a', target: '3*4=12\n12+5=17\n#### 17', answer: '17', length: 2 }),
    ex({ id: 'b', target: '3*4=12\n12+5=17\n#### 17', answer: '17', length: 2 }),
    ex({ id: 'c', target: '0.5', answer: '0.5', length: 1 }),
    ex({ id: 'd', target: '42', answer: '42', length: 1 }),
  ];
  const predictions = ['3*4=12\n12+5=17\n#### 17\n', '3*4=13\n13+4=17\n#### 17', '1/2', 'forty-two'];
  const s = scoreProblems(examples, predictions, 'test');
  assert.equal(s.exactMatch, 1 / 4);
  assert.equal(s.answerMatch, 2 / 4);
  assert.equal(s.symbolicAccuracy, 3 / 4);
  // Digit accuracy compares the final answers: a and b both end in 17, c and d share no digit in place with theirs.
  assert.deepEqual(s.perLength, {
    '1': { n: 2, exactMatch: 0, digitAccuracy: 0 },
    '2': { n: 2, exactMatch: 0.5, digitAccuracy: 1 },
  });
  assert.equal(s.digitAccuracy, 0.5);
  assert.equal(s.longestLength90, null);
  assert.deepEqual(
    s.problems.map((p) => [p.id, p.split, p.correct, p.symbolic]),
    [
      ['a', 'test', true, true],
      ['b', 'test', false, true],
      ['c', 'test', false, true],
      ['d', 'test', false, false],
    ],
  );
  // Steps: a has 2 right, b has 2 wrong ("3*4=13", "13+4=17" is right): 3 of 4.
  assert.equal(s.stepAccuracy, 3 / 4);
  assert.equal(s.errorTaxonomy.format, 1);
});

void test('stepAccuracy is null without step targets, 0 when steps were expected but none written', () => {
  assert.equal(scoreProblems([ex({})], ['5'], 's').stepAccuracy, null);
  assert.equal(scoreProblems([ex({ target: '2+3=5\n#### 5' })], ['#### 5'], 's').stepAccuracy, 0);
});

void test('reversed tasks: the prediction is reversed back before the answer comparison', () => {
  const e = ex({ target: '861', answer: '168', reversed: true });
  assert.equal(predictedAnswer('861', e), '168');
  const s = scoreProblems([e, e], ['861', '851'], 'test');
  assert.deepEqual(
    s.problems.map((p) => [p.correct, p.symbolic]),
    [
      [true, true],
      [false, false],
    ],
  );
  assert.equal(s.errorTaxonomy.carry, 1); // 158 vs 168: a dropped carry into the tens
});

void test('spaced tasks: spaces are taken out before the answer is reversed back and compared', () => {
  const e = ex({ prompt: '1 1 7 + 5 1 =', target: '8 6 1', answer: '168', reversed: true, spaced: true });
  assert.equal(predictedAnswer('8 6 1', e), '168');
  const s = scoreProblems([e, e, e], ['8 6 1', '8 5 1', '861'], 'test');
  assert.deepEqual(
    s.problems.map((p) => [p.correct, p.symbolic]),
    [
      [true, true],
      [false, false],
      [false, true], // the right digits, not in the task's format: the answer is right, the whole target is not
    ],
  );
  // 158 vs 168: one wrong digit, not a dropped carry, since 7+1 does not carry; only the operands, read from the
  // spaced prompt, tell the two apart (without them any difference of 10 counts as a carry).
  assert.equal(s.errorTaxonomy.single_digit, 1);
  assert.equal(s.errorTaxonomy.carry, 0);
});

void test('a "####" target needs "####" in the prediction; other targets take the first line', () => {
  assert.equal(predictedAnswer('2+3=5\n5', ex({ target: '2+3=5\n#### 5' })), undefined);
  assert.equal(predictedAnswer('2+3=5\n#### 5\nmore', ex({ target: '2+3=5\n#### 5' })), '5');
  assert.equal(predictedAnswer('168\n1+1=', ex({ target: '168' })), '168');
});

void test('taxonomy counts every class over wrong answers only, with stable keys', () => {
  const targets = ['24', '123', '123', '123', '123', '7'];
  const predictions = ['14', '1234', '125', '321', '', '7'];
  const s = scoreProblems(
    targets.map((t, i) => ex({ id: String(i), target: t, answer: t })),
    predictions,
    'test',
  );
  assert.deepEqual(s.errorTaxonomy, { format: 1, carry: 1, wrong_length: 1, single_digit: 1, other: 1 });
  assert.throws(() => scoreProblems([ex({})], [], 'x'), EvalError);
  assert.deepEqual(scoreProblems([], [], 'x').errorTaxonomy, {
    format: 0,
    carry: 0,
    wrong_length: 0,
    single_digit: 0,
    other: 0,
  });
});

void test('generated examples score perfectly against their own targets', () => {
  for (const name of ['addition', 'arithmetic', 'word_problems']) {
    const src = createSource({ name, params: name === 'addition' ? { reverse: true } : {} }, 1, 'test');
    const examples = Array.from({ length: 30 }, () => src.next());
    const s = scoreProblems(
      examples,
      examples.map((e) => e.target),
      'test',
    );
    assert.equal(s.exactMatch, 1, name);
    assert.equal(s.symbolicAccuracy, 1, name);
    assert.equal(s.stepAccuracy, name === 'addition' ? null : 1, name);
  }
});

void test('attention entropy: uniform rows give log(n), one-hot rows give 0, causal rows average', () => {
  const uniform = [
    [0.25, 0.25, 0.25, 0.25],
    [0.25, 0.25, 0.25, 0.25],
  ];
  const oneHot = [
    [1, 0, 0, 0],
    [0, 0, 1, 0],
  ];
  const [[u, o] = []] = attentionEntropy([[uniform, oneHot]]);
  assert.ok(Math.abs((u ?? -1) - Math.log(4)) < 1e-12);
  assert.equal(o, 0);
  // Causal: row t is uniform over t+1 keys -> mean of log(1), log(2), log(3).
  const causal = [
    [1, 0, 0],
    [0.5, 0.5, 0],
    [1 / 3, 1 / 3, 1 / 3],
  ];
  const h = attentionEntropy([[causal]])[0]?.[0] ?? -1;
  assert.ok(Math.abs(h - (Math.log(2) + Math.log(3)) / 3) < 1e-12);
  // Unnormalized rows are normalized; all-zero rows are skipped.
  assert.ok(
    Math.abs(
      (attentionEntropy([
        [
          [
            [2, 2],
            [0, 0],
          ],
        ],
      ])[0]?.[0] ?? -1) - Math.log(2),
    ) < 1e-12,
  );
});

void test('mergeEntropy averages tables (optionally weighted)', () => {
  assert.deepEqual(mergeEntropy([[[1, 2]], [[3, 4]]]), [[2, 3]]);
  assert.deepEqual(mergeEntropy([[[1, 2]], [[3, 4]]], [3, 1]), [[1.5, 2.5]]);
  assert.deepEqual(mergeEntropy([]), []);
  assert.throws(() => mergeEntropy([[[1, 2]], [[3]]]), EvalError);
});

void test('scoring arbitrary predictions never throws (fast-check, bounded)', async () => {
  const fc = (await import('fast-check')).default;
  const examples = [
    ex({ target: '168' }),
    ex({ target: '861', answer: '168', reversed: true }),
    ex({ target: '3*4=12\n12+5=17\n#### 17', answer: '17' }),
  ];
  const piece = fc.constantFrom(
    '1',
    '9',
    '+',
    '-',
    '*',
    '/',
    '=',
    '^',
    '(',
    ')',
    '####',
    '\n',
    ' ',
    'x',
    ',',
    '.',
    '!',
    '$',
    'e',
  );
  fc.assert(
    fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 4 })), { maxLength: 40 }), (parts) => {
      const p = parts.join('');
      const s = scoreProblems(examples, [p, p, p], 'fuzz');
      return s.problems.length === 3 && s.exactMatch >= 0 && s.exactMatch <= 1;
    }),
    { numRuns: 300, seed: 42 },
  );
});

void test('a multi-line plain target takes as many prediction lines as it has', () => {
  assert.equal(predictedAnswer('1\n2\n3', ex({ target: '1\n2', answer: '1\n2' })), '1\n2');
});

void test('digitAccuracy aligns from the units digit; a missing or extra digit counts wrong', () => {
  assert.equal(digitAccuracy('168', '168'), 1);
  assert.equal(digitAccuracy('178', '168'), 2 / 3);
  assert.equal(digitAccuracy('68', '168'), 2 / 3);
  assert.equal(digitAccuracy('1168', '168'), 3 / 4);
  assert.equal(digitAccuracy('861', '168'), 1 / 3);
  assert.equal(digitAccuracy(undefined, '168'), 0);
  assert.equal(digitAccuracy('', '7'), 0);
});

void test('longestPassingLength: every length from the shortest up to it reaches the threshold', () => {
  const em = (...values: number[]): Record<string, { exactMatch: number }> =>
    Object.fromEntries(values.map((v, i) => [String(i + 1), { exactMatch: v }]));
  assert.equal(longestPassingLength(em(1, 0.95, 0.9, 0.5, 0.95)), 3);
  assert.equal(longestPassingLength(em(0.8, 1)), null);
  assert.equal(longestPassingLength(em(1, 1, 1)), 3);
  assert.equal(longestPassingLength({}), null);
  // Keys sort as numbers, not strings ("10" after "9").
  const long = em(1, 1, 1, 1, 1, 1, 1, 1, 1, 0.91, 0.2, 0.1);
  assert.equal(longestPassingLength(long), 10);
  assert.equal(longestPassingLength(long, 0.95), 9);
});

void test('padded and reversed formats read back to the ordinary answer; per length figures and the longest length', () => {
  const sources = [
    { padAnswer: true },
    { padOperands: true, padAnswer: true, reverse: true },
    { reverseAll: true, padAnswer: true },
    { reverseAll: true, padOperands: true, spaced: true },
  ];
  for (const params of sources) {
    const source = createSource({ name: 'addition', params: { minDigits: 1, maxDigits: 4, ...params } }, 5, 'test');
    const examples = Array.from({ length: 60 }, () => source.next());
    for (const e of examples)
      assert.equal(predictedAnswer(e.target, e), e.answer, `${JSON.stringify(params)} ${e.prompt}`);
    // Right on lengths 1-2, wrong from 3 on (one digit changed): exact match per length and the longest length.
    const predictions = examples.map((e) => {
      if (e.length < 3) return e.target;
      const i = Array.from(e.target).findIndex((c) => /\d/.test(c));
      return e.target.slice(0, i) + String((Number(e.target[i]) + 1) % 10) + e.target.slice(i + 1);
    });
    const s = scoreProblems(examples, predictions, 'test');
    assert.deepEqual(Object.keys(s.perLength), ['1', '2', '3', '4']);
    assert.equal(s.perLength['1']?.exactMatch, 1);
    assert.equal(s.perLength['3']?.exactMatch, 0);
    assert.ok((s.perLength['3']?.digitAccuracy ?? 0) > 0.5 && (s.perLength['3']?.digitAccuracy ?? 1) < 1);
    assert.equal(s.longestLength90, 2);
    // The taxonomy reads the prompt's numbers in ordinary order: no wrong answer is a format error.
    assert.equal(s.errorTaxonomy.format, 0, JSON.stringify(params));
  }
});
