// The comparison table the coordinator prints and writes: the longest length with >= 90% exact match per seed, and
// models below 95% in distribution flagged as under-trained and listed after the ranked ones. The per-length
// figures an agent sends cross the wire to get there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Evaluation, JobId } from '../../protocol/messages.ts';
import { validateAgentMessage, validateCoordinatorMessage } from '../../protocol/validate.ts';
import {
  buildComparisonSummary,
  formatComparisonSummary,
  formatLongestLength,
  rankRows,
} from '../../src/report/comparison.ts';
import { evaluation, problems } from './fixtures.ts';

/** An evaluation whose per-length exact match is given; in distribution `inDist`. */
function evalWith(encoding: 'rope' | 'mape' | 'nope', seed: number, inDist: number, perLength: number[]): Evaluation {
  const jobId = `${encoding}-addition-s${seed}`;
  const e = evaluation(
    jobId,
    encoding,
    seed,
    problems(
      4,
      'test',
      () => 1,
      () => true,
    ),
  );
  e.exactMatch = inDist;
  e.perLength = Object.fromEntries(
    perLength.map((em, i) => [String(i + 1), { n: 100, exactMatch: em, digitAccuracy: Math.min(1, em + 0.05) }]),
  );
  return e;
}

const experiment = (evals: readonly Evaluation[]) => ({
  name: 'lg',
  encodings: ['rope', 'mape', 'nope'],
  jobs: evals.map((e) => ({ jobId: e.jobId, encoding: e.encoding, runId: 'r' })),
});

void test('the table ranks trained models first, shows the longest length per seed, and flags the under-trained', () => {
  const evals = [
    evalWith('rope', 1, 0.99, [1, 0.95, 0.5]),
    evalWith('rope', 2, 0.97, [1, 0.2, 0]),
    evalWith('mape', 1, 0.98, [1, 1, 0.93]),
    evalWith('mape', 2, 0.99, [1, 0.96, 0.91]),
    // The best on every length, but under-trained on seed 2: flagged and listed last.
    evalWith('nope', 1, 0.99, [1, 1, 1]),
    { ...evalWith('nope', 2, 0.9, [1, 1, 1]), longestLength90: 3 },
  ];
  const summary = buildComparisonSummary(experiment(evals), evals);
  const row = (e: string) => summary.rows.find((r) => r.encoding === e);
  assert.deepEqual(row('rope')?.longestLength90, [2, 1]);
  assert.deepEqual(row('mape')?.longestLength90, [3, 3]);
  assert.deepEqual(row('nope')?.underTrainedSeeds, 1);
  assert.equal(row('mape')?.underTrainedSeeds, 0);
  assert.ok(Math.abs((row('mape')?.digitAccuracyPerLength['3'] ?? 0) - 0.97) < 1e-12);
  assert.deepEqual(
    rankRows(summary.rows).map((r) => r.encoding),
    ['mape', 'rope', 'nope'],
  );
  const lines = formatComparisonSummary(summary).split('\n');
  assert.match(lines[0] ?? '', /longest 90%/);
  assert.match(lines[2] ?? '', /^mape .* 3 .*$/);
  assert.match(lines[3] ?? '', /^rope .* 1-2 /);
  assert.match(lines[4] ?? '', /^nope .*under-trained \(1\/2 seeds\)$/);
  assert.match(lines[5] ?? '', /under-trained: below 95\.0% exact match in distribution/);
});

void test('formatLongestLength: one figure when the seeds agree, a range when not, none below the shortest', () => {
  assert.equal(formatLongestLength([7, 7, 7]), '7');
  assert.equal(formatLongestLength([6, 8, 7]), '6-8');
  assert.equal(formatLongestLength([null, 5]), 'none-5');
  assert.equal(formatLongestLength([null]), 'none');
  assert.equal(formatLongestLength([]), '-');
});

void test('per-length digit accuracy and longestLength90 cross the wire; per-length testing reaches the agent', () => {
  const e = evalWith('mape', 1, 0.99, [1, 0.95]);
  const sent = { ...e, digitAccuracy: 0.995, longestLength90: 2 };
  const msg = validateAgentMessage({ type: 'job_result', jobId: e.jobId, epoch: 1, evaluation: sent });
  assert.equal(msg.type, 'job_result');
  if (msg.type !== 'job_result') return;
  assert.equal(msg.evaluation.longestLength90, 2);
  assert.equal(msg.evaluation.perLength['2']?.digitAccuracy, 0.95 + 0.05);
  // An older agent's evaluation (no digit accuracy, no longest length) still validates.
  const { digitAccuracy: _d, longestLength90: _l, ...older } = sent;
  older.perLength = { '1': { n: 3, exactMatch: 1 } };
  assert.equal(
    validateAgentMessage({ type: 'job_result', jobId: e.jobId, epoch: 1, evaluation: older }).type,
    'job_result',
  );
  assert.throws(
    () =>
      validateAgentMessage({
        type: 'job_result',
        jobId: e.jobId,
        epoch: 1,
        evaluation: { ...sent, longestLength90: -1 },
      }),
    /evaluation\.longestLength90/,
  );
  const job = {
    jobId: 'mape-addition-s1' as JobId,
    runId: 'r',
    encoding: 'mape',
    task: { name: 'addition', params: { maxDigits: 5 } },
    seed: 1,
    preset: 'tiny',
    model: { layers: 1, dModel: 8, heads: 1, ffnDim: 8, dropout: 0, maxLen: 48 },
    training: { steps: 1, batchSize: 1, learningRate: 0, warmupSteps: 0, weightDecay: 0, clipNorm: 0 },
    evaluation: { samples: 1, lengthRange: [1, 12], perLength: 500 },
    checkpointEvery: 0,
  };
  const assign = (evaluation: unknown) =>
    validateCoordinatorMessage({ type: 'assign', job: { ...job, evaluation }, attempt: 1, epoch: 1 });
  const ok = assign(job.evaluation);
  assert.ok(ok.type === 'assign' && ok.job.evaluation.lengthRange?.[1] === 12);
  assert.throws(
    () => assign({ ...job.evaluation, lengthRange: [12, 1] }),
    /evaluation\.lengthRange: expected from <= to/,
  );
  assert.throws(() => assign({ ...job.evaluation, perLength: 0 }), /evaluation\.perLength/);
});
