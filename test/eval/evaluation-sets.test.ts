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

void test('a trained job evaluated with lengthRange reports every length, digit accuracy and longestLength90', async () => {
  const { buildJobSpec } = await import('../../src/train/job.ts');
  const { createTfWorkload } = await import('../../src/train/tf-workload.ts');
  const base = buildJobSpec({
    encoding: 'mape',
    task: { name: 'addition', params: { minDigits: 1, maxDigits: 2, reverse: true } },
    steps: 2,
    batchSize: 4,
    evalSamples: 6,
    checkpointEvery: 0,
  });
  const spec = { ...base, evaluation: { samples: 6, lengthRange: [1, 4] as [number, number], perLength: 5 } };
  const w = await createTfWorkload(spec, { backend: 'cpu' });
  try {
    await w.trainSteps(2);
    const e = await w.evaluate();
    assert.deepEqual(Object.keys(e.perLength), ['1', '2', '3', '4']);
    const length = e.problems.filter((p) => p.split === 'length');
    assert.equal(length.length, 20, '5 problems at each of 4 lengths');
    // Lengths 1 and 2 pool the test split with the length split.
    const inLength = (l: number) => e.problems.filter((p) => p.length === l);
    for (const l of [1, 2, 3, 4]) {
      const b = e.perLength[String(l)];
      assert.ok(b !== undefined && b.n === inLength(l).length, `length ${l}`);
      assert.equal(b.exactMatch, inLength(l).filter((p) => p.correct).length / b.n);
      assert.ok(typeof b.digitAccuracy === 'number' && b.digitAccuracy >= 0 && b.digitAccuracy <= 1);
    }
    assert.ok(typeof e.digitAccuracy === 'number');
    const longest = e.longestLength90;
    assert.ok(longest !== undefined, 'a current agent always reports it');
    assert.ok(longest === null || (longest >= 1 && longest <= 4));
  } finally {
    w.dispose();
  }
});
