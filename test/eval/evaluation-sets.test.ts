// The problems a job is evaluated on: the in-distribution test split, then the length split from lengthTask or
// from per-length sets of the job's own task (lengthRange, perLength).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobSpec } from '../../protocol/messages.ts';
import { createSource, drawExamples } from '../../src/data/tasks.ts';
import { evaluationSets } from '../../src/eval/evaluation-sets.ts';

const task: JobSpec['task'] = { name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } };

void test('lengthRange: perLength held-out problems for every operand length, in the task format, split length', () => {
  const sets = evaluationSets({ task, seed: 4, evaluation: { samples: 30, lengthRange: [2, 6], perLength: 25 } });
  assert.deepEqual(
    sets.map((s) => [s.split, s.examples.length]),
    [
      ['test', 30],
      ['length', 125],
    ],
  );
  const length = sets[1]?.examples ?? [];
  for (const l of [2, 3, 4, 5, 6]) assert.equal(length.filter((e) => e.length === l).length, 25, `length ${l}`);
  assert.ok(
    length.every((e) => e.reversed === true),
    'the task format (reverse) is kept',
  );
  assert.equal(new Set(length.map((e) => e.id)).size, length.length, 'ids are unique');
  // None of them is in the train stream: the first 20,000 training problems share no prompt with the length set.
  const train = new Set(drawExamples(createSource(task, 4, 'train'), 20_000).map((e) => e.prompt));
  const seen = length.filter((e) => train.has(e.prompt));
  assert.deepEqual(seen, []);
  // The same seed gives the same sets (paired tests across encodings).
  const again = evaluationSets({ task, seed: 4, evaluation: { samples: 30, lengthRange: [2, 6], perLength: 25 } });
  assert.deepEqual(
    again[1]?.examples.map((e) => e.prompt),
    length.map((e) => e.prompt),
  );
});

void test('lengthTask keeps its own set; without either only the test split is drawn', () => {
  const lengthTask = { name: 'addition', params: { minDigits: 4, maxDigits: 4, reverse: true } };
  const withTask = evaluationSets({ task, seed: 1, evaluation: { samples: 10, lengthTask, lengthSamples: 7 } });
  assert.deepEqual(
    withTask.map((s) => [s.split, s.examples.length]),
    [
      ['test', 10],
      ['length', 7],
    ],
  );
  assert.ok(withTask[1]?.examples.every((e) => e.length === 4));
  const plain = evaluationSets({ task, seed: 1, evaluation: { samples: 10 } });
  assert.deepEqual(
    plain.map((s) => s.split),
    ['test'],
  );
});
