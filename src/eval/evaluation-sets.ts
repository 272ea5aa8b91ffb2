// The problems a job is evaluated on, from its EvaluationSpec: the held-out test split of its own task ('test', the
// in-distribution score), then the length-generalization set ('length'): either `lengthTask`, or per-length sets of
// the job's own task and format for every operand length in `lengthRange`. Seeded by the job seed, so every encoding
// with the same seed is tested on the same problems, and none of them was seen in training.
import type { JobSpec } from '../../protocol/messages.ts';
import { createSource, drawExamples, lengthTestSets } from '../data/tasks.ts';
import type { Example } from '../data/types.ts';

export interface EvaluationSet {
  split: 'test' | 'length';
  examples: Example[];
}

export function evaluationSets(job: Pick<JobSpec, 'task' | 'seed' | 'evaluation'>): EvaluationSet[] {
  const { evaluation, task, seed } = job;
  const draw = (t: JobSpec['task'], n: number): Example[] =>
    n > 0 ? drawExamples(createSource(t, seed, 'test'), n, { unique: true }) : [];
  const sets: EvaluationSet[] = [{ split: 'test', examples: draw(task, evaluation.samples) }];
  if (evaluation.lengthTask !== undefined) {
    sets.push({
      split: 'length',
      examples: draw(evaluation.lengthTask, evaluation.lengthSamples ?? evaluation.samples),
    });
  }
  if (evaluation.lengthRange !== undefined) {
    const [from, to] = evaluation.lengthRange;
    const lengths = Array.from({ length: to - from + 1 }, (_, i) => from + i);
    const byLength = lengthTestSets(task, lengths, evaluation.perLength ?? 0, seed);
    sets.push({ split: 'length', examples: [...byLength.values()].flat() });
  }
  return sets;
}
