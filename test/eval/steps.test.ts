import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countSteps, extractSteps } from '../../src/eval/steps.ts';

const ok = (text: string): boolean[] => extractSteps(text).map((s) => s.correct);

void test('each "a op b = c" step is found and checked', () => {
  assert.deepEqual(ok('3*4=12\n12+5=17\n#### 17'), [true, true]);
  assert.deepEqual(ok('3*4=12\n12+5=18\n#### 18'), [true, false]);
  assert.deepEqual(ok('12 - 5 = 7.'), [true]);
  assert.deepEqual(ok('-3+2=-1'), [true]);
  assert.deepEqual(ok('18-6=12'), [true]);
  assert.deepEqual(countSteps('17'), { correct: 0, total: 0 });
});

void test('chains use operator precedence; GSM8K annotations and $ and thousands separators work', () => {
  assert.deepEqual(ok('2+3*4=14'), [true]);
  assert.deepEqual(ok('2+3*4=20'), [false]);
  assert.deepEqual(ok('80*25/100=20'), [true]);
  assert.deepEqual(ok('Natalia sold 48/2 = <<48/2=24>>24 clips'), [true]);
  assert.deepEqual(ok('$1,000*3=$3,000'), [true]);
});

void test('division and decimals: rounded to the shown places is right; integers are exact (BigInt)', () => {
  assert.deepEqual(ok('10/4=2.5'), [true]);
  assert.deepEqual(ok('10/3=3.33'), [true]);
  assert.deepEqual(ok('10/3=3'), [false]);
  assert.deepEqual(ok('5/0=1'), [false]);
  assert.deepEqual(ok('99999999999999999*3=299999999999999997'), [true]);
  assert.deepEqual(ok('99999999999999999*3=300000000000000000'), [false]);
});

void test('numbers glued to words are not steps', () => {
  assert.deepEqual(ok('x3+4=7'), []);
});
