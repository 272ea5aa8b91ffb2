import { test } from 'node:test';
import assert from 'node:assert/strict';
import { additionCarries, classifyError } from '../../src/eval/taxonomy.ts';

void test('format: no parseable answer', () => {
  assert.equal(classifyError(undefined, '12'), 'format');
  assert.equal(classifyError('', '12'), 'format');
  assert.equal(classifyError('1+', '12'), 'format');
  assert.equal(classifyError('12)(', '12'), 'format');
});

void test('carry: off by a sum of powers of ten (k >= 1) of one sign, even when that changes the length', () => {
  assert.equal(classifyError('14', '24'), 'carry'); // 19+5 with the carry dropped
  assert.equal(classifyError('95', '105'), 'carry'); // 57+48, carry into the tens dropped
  assert.equal(classifyError('990', '1000'), 'carry'); // 999+1, the last carry dropped
  assert.equal(classifyError('1110', '1000'), 'carry'); // two extra carries
  assert.equal(classifyError('1190', '1000'), 'other'); // +100 and +90: 90 is no power of ten
  assert.equal(classifyError('forty-two', '42'), 'format');
});

void test('wrong_length: digit counts differ (not a carry)', () => {
  assert.equal(classifyError('1234', '123'), 'wrong_length');
  assert.equal(classifyError('12', '123'), 'wrong_length');
});

void test('single_digit: same length, exactly one digit differs (not a carry)', () => {
  assert.equal(classifyError('125', '123'), 'single_digit'); // units place: never a carry
  assert.equal(classifyError('153', '123'), 'single_digit'); // off by 30
});

void test('other: several digits wrong, or a wrong non-integer', () => {
  assert.equal(classifyError('321', '123'), 'other');
  assert.equal(classifyError('2.5', '3'), 'other');
});

void test('carry with the addition prompt: a dropped carry needs a real one, an invented one needs none', () => {
  assert.deepEqual(additionCarries('19', '5'), [false, true, false]);
  assert.equal(classifyError('14', '24', '19+5='), 'carry'); // dropped the real carry into the tens
  assert.equal(classifyError('12', '22', '11+11='), 'single_digit'); // no carry there to drop
  assert.equal(classifyError('32', '22', '11+11='), 'carry'); // an invented carry into the tens
  assert.equal(classifyError('95', '105', '57+48='), 'carry');
  assert.equal(classifyError('990', '1000', '999+1='), 'carry');
  assert.equal(classifyError('900', '1000', '999+1='), 'carry'); // dropped carries into tens and hundreds
  assert.equal(classifyError('1090', '1000', '999+1='), 'single_digit'); // +100-10: +100 would be an invented carry where there is a real one
  assert.equal(classifyError('1090', '1000'), 'single_digit'); // without the prompt: mixed signs are not a carry
});
