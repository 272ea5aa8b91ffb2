// writeReport on a hand-written run (known numbers, a failed job, a broken file) and on a small real run
// (real training, real models, attention heatmaps). Every PNG must decode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Evaluation } from '../../protocol/messages.ts';
import { writeReport } from '../../src/report/index.ts';
import { findChromium } from '../../src/report/browser.ts';
import type { ComparisonReport, StatisticalAnalysis } from '../../src/report/aggregate.ts';
import {
  decodePng,
  doneJob,
  evaluation,
  problems,
  tempRunDir,
  writeHandRun,
  writeRealRun,
  type Problem,
} from './fixtures.ts';

const len = (i: number): number => 1 + (i % 3);

const testSplit = (n: number, right: number): Problem[] => problems(n, 'test', len, (i) => i < right);
const lengthSplit = (right: number): Problem[] =>
  problems(
    4,
    'length',
    () => 4,
    (i) => i < right,
  );

async function handRun(dir: string): Promise<void> {
  const metrics = Array.from({ length: 30 }, (_, i) => ({
    step: i + 1,
    loss: 3 / (i + 1),
    learningRate: 0.001,
    gradNorm: 1,
    tokensPerSecond: 400,
    time: i,
  }));
  await writeHandRun(dir, [
    doneJob('rope', 1, [...testSplit(10, 8), ...lengthSplit(3)], { metrics }),
    doneJob('alibi', 1, [...testSplit(10, 3), ...lengthSplit(1)], { metrics }),
    doneJob('rope', 2, testSplit(10, 6)),
    doneJob('alibi', 2, testSplit(10, 2)),
    { jobId: 'nope-addition-s1', encoding: 'nope', seed: 1, failed: 'loss is NaN at step 12' },
    { jobId: 't5-addition-s1', encoding: 't5', seed: 1 },
  ]);
  // A broken evaluation.json must be reported by path and field, not crash the report.
  const broken = { ...evaluation('t5-addition-s1', 't5', 1, []), exactMatch: 'high' };
  await writeFile(join(dir, 'jobs', 't5-addition-s1', 'evaluation.json'), JSON.stringify(broken));
}

void test('report from a hand-written run: numbers, tests, missing jobs, files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pe-arena-report-'));
  try {
    await handRun(dir);
    const summary = await writeReport(dir, { attention: false, resamples: 300 });
    const out = join(dir, 'final_comparison');
    for (const f of ['comparison_report.json', 'statistical_analysis.json', 'report.html', 'summary.md'])
      assert.ok(existsSync(join(out, f)), f);
    const comparison = JSON.parse(await readFile(join(out, 'comparison_report.json'), 'utf8')) as ComparisonReport;
    const rope = comparison.rows.find((r) => r.encoding === 'rope');
    const alibi = comparison.rows.find((r) => r.encoding === 'alibi');
    assert.ok(rope && alibi);
    assert.equal(rope.seeds, 2);
    assert.ok(Math.abs(rope.exactMatch - 0.7) < 1e-12, String(rope.exactMatch)); // (8 + 6) / 20 test problems
    assert.ok(Math.abs(alibi.exactMatch - 0.25) < 1e-12, String(alibi.exactMatch));
    assert.ok(
      rope.ci.exactMatch.lo <= 0.7 && 0.7 <= rope.ci.exactMatch.hi && rope.ci.exactMatch.hi - rope.ci.exactMatch.lo > 0,
    );
    assert.equal(rope.perLength['4'], 0.75); // the length split: 3 of 4
    // Loss 3/step: the mean of the 10 losses up to step 11 is 0.606, up to step 12 it is 0.481 <= 0.5.
    assert.equal(rope.efficiency.stepsToTargetLoss, 12);
    assert.deepEqual(comparison.jobs.missing.sort(), ['nope-addition-s1', 't5-addition-s1']);
    assert.deepEqual(comparison.jobs.failed, [
      { jobId: 'nope-addition-s1', reason: 'TrainError: loss is NaN at step 12' },
    ]);
    assert.ok(
      comparison.warnings.some((w) => w.includes('t5-addition-s1') && w.includes('exactMatch')),
      comparison.warnings.join('\n'),
    );

    const analysis = JSON.parse(await readFile(join(out, 'statistical_analysis.json'), 'utf8')) as StatisticalAnalysis;
    assert.equal(analysis.pairwise.length, 1);
    const t = analysis.pairwise[0];
    assert.ok(t);
    // 24 paired problems (10 + 4 + 10); rope right and alibi wrong: 5 (seed 1 test) + 2 (seed 1 length) + 4 (seed 2).
    assert.deepEqual([t.a, t.b, t.n, t.aOnly, t.bOnly], ['rope', 'alibi', 24, 11, 0]);
    assert.ok(Math.abs(t.p - 2 / 2 ** 11) < 1e-15, String(t.p));
    assert.equal(t.pHolm, t.p);
    assert.equal(t.significant, true);
    assert.deepEqual(
      analysis.meanReciprocalRank.slice(0, 2).map((m) => [m.encoding, m.mrr]),
      [
        ['rope', 1],
        ['alibi', 0.5],
      ],
    );
    const seedRope = analysis.seedDifferences.find((s) => s.encoding === 'rope');
    assert.deepEqual(seedRope?.perSeed, [
      { seed: 1, exactMatch: 0.8 },
      { seed: 2, exactMatch: 0.6 },
    ]);
    assert.ok(
      analysis.findings.some((f) => f.startsWith('On addition, rope has the highest exact match, 70.0%')),
      analysis.findings.join('\n'),
    );
    // 70% and 25% in distribution: both under-trained, so flagged and neither ranked on the longer lengths.
    assert.ok(
      analysis.findings.some((f) => f.includes('rope (2/2 seeds), alibi (2/2 seeds) are under-trained')),
      analysis.findings.join('\n'),
    );
    assert.ok(
      !analysis.findings.some((f) => /generalizes furthest|carries furthest|leads with/.test(f)),
      analysis.findings.join('\n'),
    );
    assert.deepEqual([rope.underTrainedSeeds, alibi.underTrainedSeeds], [2, 2]);

    const html = await readFile(join(out, 'report.html'), 'utf8');
    assert.match(html, /Incomplete run/);
    assert.match(html, /nope-addition-s1: TrainError: loss is NaN at step 12/);
    assert.match(html, /data:image\/png;base64,/);
    assert.doesNotMatch(html, /<script/); // self-contained and static
    const md = await readFile(join(out, 'summary.md'), 'utf8');
    assert.match(md, /\| addition \| rope \| 2 \| 70\.0%/);
    assert.match(md, /\| addition \| rope \| 2 \| 1-3 \| 70\.0% \| none \| 0\.00x \| under-trained \(2\/2 seeds\) \|/);
    assert.match(md, /## Published results beside ours/);
    assert.match(md, /McLeish et al\. 2024 \(Abacus\) \| 16 layers, 1 GPU-day \| 20 -> 100 digits \| 99% \| 5-6x/);
    assert.match(md, /\| this run: rope \|/);

    const pngs = (await readdir(join(out, 'plots'))).sort();
    assert.deepEqual(pngs, [
      'accuracy.png',
      'efficiency.png',
      'error-analysis.png',
      'length-generalization.png',
      'training-curves.png',
    ]);
    for (const p of pngs) {
      const { width, height } = await decodePng(await readFile(join(out, 'plots', p)));
      assert.ok(width > 200 && height > 100, `${p}: ${width}x${height}`);
    }
    assert.deepEqual(summary.plots.length, 5);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('report of an empty run says there is nothing to compare', async (t) => {
  const dir = await tempRunDir(t, 'pe-arena-report-');
  await writeHandRun(dir, [{ jobId: 'rope-addition-s1', encoding: 'rope', seed: 1 }]);
  const summary = await writeReport(dir, { attention: false });
  assert.deepEqual(summary.jobs, { total: 1, evaluated: 0, missing: ['rope-addition-s1'] });
  assert.ok(summary.findings.some((f) => f.includes('nothing to compare')));
  assert.ok(summary.skipped.some((s) => s.startsWith('accuracy.png')));
  await assert.rejects(writeReport(join(dir, 'no-such-dir')), /is not a directory/);
});

void test('report from a small real run: numbers match evaluation.json, heatmaps drawn from the models', async (t) => {
  const dir = await tempRunDir(t, 'pe-arena-real-');
  await writeRealRun(dir, { encodings: ['rope', 'alibi'], steps: 3, samples: 10, lengthSamples: 4 });
  const pdf = findChromium() !== null;
  const summary = await writeReport(dir, { resamples: 200, pdf });
  const out = join(dir, 'final_comparison');
  const comparison = JSON.parse(await readFile(join(out, 'comparison_report.json'), 'utf8')) as ComparisonReport;
  assert.equal(comparison.rows.length, 2);
  for (const row of comparison.rows) {
    const e = JSON.parse(
      await readFile(join(dir, 'jobs', `${row.encoding}-addition-s1`, 'evaluation.json'), 'utf8'),
    ) as Evaluation;
    assert.equal(row.exactMatch, e.exactMatch, `${row.encoding} exact match`);
    assert.equal(row.symbolicAccuracy, e.symbolicAccuracy, `${row.encoding} symbolic`);
    assert.equal(row.efficiency.parameters, e.parameters);
    for (const [k, b] of Object.entries(e.perLength))
      assert.ok(Math.abs((row.perLength[k] ?? -1) - b.exactMatch) < 1e-12, `${row.encoding} length ${k}`);
    assert.deepEqual(row.attentionEntropyTable, e.attentionEntropy);
  }
  // Both jobs have metrics, per-length results, wrong answers (3 steps of training) and a model to load: every
  // plot is drawn, one heatmap per encoding, and nothing is skipped (report.pdf included, when it is asked for).
  const pngs = (await readdir(join(out, 'plots'))).sort();
  assert.deepEqual(pngs, [
    'accuracy.png',
    'attention-alibi.png',
    'attention-rope.png',
    'efficiency.png',
    'error-analysis.png',
    'length-generalization.png',
    'training-curves.png',
  ]);
  for (const p of pngs) await decodePng(await readFile(join(out, 'plots', p)));
  assert.deepEqual(summary.skipped, []);
  if (pdf) {
    const bytes = await readFile(join(out, 'report.pdf'));
    assert.equal(bytes.subarray(0, 5).toString('latin1'), '%PDF-');
  } else {
    assert.equal(existsSync(join(out, 'report.pdf')), false);
  }
});

void test('findings say so when encodings tie instead of naming a winner', async () => {
  const { loadRun, buildComparison, buildAnalysis } = await import('../../src/report/index.ts');
  const dir = await mkdtemp(join(tmpdir(), 'pe-arena-report-'));
  try {
    await writeHandRun(dir, [
      {
        jobId: 'rope-addition-s1',
        encoding: 'rope',
        seed: 1,
        evaluation: evaluation(
          'rope-addition-s1',
          'rope',
          1,
          problems(6, 'test', len, (i) => i < 3),
        ),
      },
      {
        jobId: 'alibi-addition-s1',
        encoding: 'alibi',
        seed: 1,
        evaluation: evaluation(
          'alibi-addition-s1',
          'alibi',
          1,
          problems(6, 'test', len, (i) => i >= 3),
        ),
      },
    ]);
    const run = loadRun(dir);
    const comparison = buildComparison(run, { resamples: 50 });
    const analysis = buildAnalysis(run, comparison, { resamples: 50 });
    assert.ok(
      analysis.findings.some((f) => f.includes('rope, alibi tie for the highest exact match at 50.0%')),
      analysis.findings.join('\n'),
    );
    assert.ok(!analysis.findings.some((f) => f.includes('has the highest')));
    assert.ok(analysis.findings.some((f) => f.includes('rope, alibi share the best mean reciprocal rank (1.00)')));
    // 3 problems only rope got right, 3 only alibi: p = 1.
    assert.deepEqual([analysis.pairwise[0]?.aOnly, analysis.pairwise[0]?.bOnly, analysis.pairwise[0]?.p], [3, 3, 1]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('a model trained to 95% in distribution is ranked by the longest length it carries; one below is flagged', async (t) => {
  const { loadRun, buildComparison, buildAnalysis } = await import('../../src/report/index.ts');
  const dir = await tempRunDir(t, 'pe-arena-report-');
  // Lengths 1-3 in distribution (all right for rope and alibi, 9 of 10 for nope), then the length split at 4 and 5.
  const inDistribution = (right: number): Problem[] => problems(20, 'test', len, (i) => i < right);
  const at = (length: number, right: number): Problem[] =>
    problems(
      10,
      'length',
      () => length,
      (i) => i < right,
    ).map((p) => ({ ...p, id: `${p.id}:len${length}` }));
  const job = (encoding: 'rope' | 'alibi' | 'nope', ps: Problem[]) => ({
    jobId: `${encoding}-addition-s1`,
    encoding,
    seed: 1,
    evaluation: evaluation(`${encoding}-addition-s1`, encoding, 1, ps),
  });
  await writeHandRun(dir, [
    job('rope', [...inDistribution(20), ...at(4, 9), ...at(5, 2)]),
    job('alibi', [...inDistribution(20), ...at(4, 5), ...at(5, 0)]),
    job('nope', [...inDistribution(18), ...at(4, 10), ...at(5, 10)]),
  ]);
  const run = loadRun(dir);
  const comparison = buildComparison(run, { resamples: 50 });
  const analysis = buildAnalysis(run, comparison, { resamples: 50 });
  const row = (e: string) => comparison.rows.find((r) => r.encoding === e);
  assert.deepEqual(row('rope')?.longestLength90, [4]);
  assert.deepEqual(row('alibi')?.longestLength90, [3]);
  assert.deepEqual(row('nope')?.longestLength90, [null], 'length 1 has 6 of 7 right: 86%, below 90%');
  assert.deepEqual(
    comparison.rows.map((r) => r.underTrainedSeeds),
    [0, 0, 1],
  );
  const findings = analysis.findings.join('\n');
  assert.match(findings, /nope \(1\/1 seeds\) is under-trained/);
  // nope is perfect on the length split, but at 90% in distribution it is not ranked there.
  assert.match(findings, /rope generalizes furthest to longer problems: 55\.0% exact match on the length split/);
  assert.match(
    findings,
    /trained on 1-3 digits, rope carries furthest: >= 90% exact match up to 4 digits on every seed \(1\.33x/,
  );
  assert.doesNotMatch(findings, /nope generalizes furthest/);
});
