// training.dataParallel: one rule (protocol/validate.ts's dataParallelProblems), applied on the wire, in the trainer's
// job check and (test/coordinator/parts.test.ts) in experiment files, each naming the offending field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MalformedMessageError } from '../../protocol/errors.ts';
import type { JobSpec } from '../../protocol/messages.ts';
import { dataParallelProblems, validateCoordinatorMessage } from '../../protocol/validate.ts';
import { checkJobSpec } from '../../src/train/job.ts';
import { jobSpec } from '../protocol/fixtures/samples.ts';

const BAD: [value: unknown, field: string, pattern: RegExp][] = [
  [{ ranks: 0 }, 'ranks', /a positive integer/],
  [{ ranks: 1.5 }, 'ranks', /a positive integer/],
  [{ ranks: '2' }, 'ranks', /a positive integer/],
  [{}, 'ranks', /a positive integer/],
  [{ ranks: 2, minRanks: 3 }, 'minRanks', /at most ranks \(2\)/],
  [{ ranks: 2, minRanks: 0 }, 'minRanks', /a positive integer/],
  [{ ranks: 3, maxRanks: 2 }, 'maxRanks', /at least ranks \(3\)/],
  [{ ranks: 2, maxRanks: 2.5 }, 'maxRanks', /a positive integer/],
  [{ ranks: 2, maxRanks: 40 }, 'maxRanks', /at most training\.batchSize \(32\)/],
  [{ ranks: 33 }, 'ranks', /at most training\.batchSize \(32\)/],
  [3, '', /an object/],
];

const withDataParallel = (dataParallel: unknown): JobSpec =>
  ({ ...jobSpec, training: { ...jobSpec.training, batchSize: 32, dataParallel } }) as JobSpec;

void test('dataParallelProblems: good values pass, each bad one names its field', () => {
  for (const good of [{ ranks: 1 }, { ranks: 2, minRanks: 1, maxRanks: 4 }, { ranks: 32, minRanks: 32 }])
    assert.deepEqual(dataParallelProblems(good, 32), [], JSON.stringify(good));
  for (const [value, field, pattern] of BAD) {
    const problems = dataParallelProblems(value, 32);
    assert.equal(problems[0]?.field, field, JSON.stringify(value));
    assert.match(problems[0]?.expected ?? '', pattern, JSON.stringify(value));
  }
});

void test('an assign whose job has a bad training.dataParallel is refused on the wire, naming the field', () => {
  const ok = validateCoordinatorMessage({ type: 'assign', job: withDataParallel({ ranks: 2 }), attempt: 1, epoch: 1 });
  assert.equal(ok.type === 'assign' && ok.job.training.dataParallel?.ranks, 2);
  // Absent: today's single-agent job, still valid.
  validateCoordinatorMessage({ type: 'assign', job: jobSpec, attempt: 1, epoch: 1 });
  for (const [value, field, pattern] of BAD) {
    const path = `assign.job.training.dataParallel${field === '' ? '' : `.${field}`}`;
    assert.throws(
      () => validateCoordinatorMessage({ type: 'assign', job: withDataParallel(value), attempt: 1, epoch: 1 }),
      (e: unknown) =>
        e instanceof MalformedMessageError && e.message.includes(`${path}: expected`) && pattern.test(e.message),
      `${JSON.stringify(value)} -> ${path}`,
    );
  }
});

void test("the trainer's job check names training.dataParallel's bad fields", () => {
  assert.deepEqual(checkJobSpec(withDataParallel({ ranks: 2, minRanks: 1, maxRanks: 3 })), []);
  for (const [value, field, pattern] of BAD) {
    const errors = checkJobSpec(withDataParallel(value));
    const path = `job.training.dataParallel${field === '' ? '' : `.${field}`}: must be`;
    assert.ok(
      errors.some((e) => e.startsWith(path) && pattern.test(e)),
      `${JSON.stringify(value)}: ${errors.join('; ')}`,
    );
  }
});
