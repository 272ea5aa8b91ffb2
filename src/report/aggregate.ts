// From a run's jobs to the numbers of the report: per encoding and task, means with seeded bootstrap CIs
// (over seeds, then problems), efficiency, paired exact McNemar tests with Holm correction, seed spread, MRR,
// error analysis (taxonomy plus calculation vs reasoning errors on problems with steps), and findings in words.
import type { Evaluation, MetricPoint } from '../../protocol/messages.ts';
import { extractSteps } from '../eval/steps.ts';
import type { JobRecord, RunData } from '../run-dir/load-run.ts';
import {
  bootstrapCI,
  discordant,
  holm,
  mcnemarExact,
  mean,
  meanReciprocalRank,
  type Interval,
  type Unit,
} from './stats.ts';
import { seedSpread, summarizeSeeds } from './comparison.ts';
import type { ComparisonSummaryRow } from './comparison.ts';
import { lengthFindings, trainedLengthsByTask } from './length-generalization.ts';

export interface AggregateOptions {
  /** Bootstrap resamples (default 1000). */
  resamples?: number;
  /** Seed of the bootstrap (default 0). */
  seed?: number;
  /** Training accuracy that counts as "reached" for steps-to-target (default 0.9). */
  targetAccuracy?: number;
  /** Training loss that counts as "reached" for steps-to-target-loss (default 0.5). */
  targetLoss?: number;
  /** Family-wise significance level for the Holm-corrected tests (default 0.05). */
  alpha?: number;
}

/** The coordinator's summary row plus intervals and more: its table code can still read this file. */
export interface ComparisonRow extends ComparisonSummaryRow {
  ci: {
    exactMatch: Interval;
    symbolicAccuracy: Interval;
    stepAccuracy: Interval | null;
    attentionEntropy: Interval;
    perLength: Record<string, Interval>;
  };
  /** [layer][head] entropy, mean over seeds. */
  attentionEntropyTable: number[][];
  efficiency: {
    parameters: number;
    tokensPerSecond: number;
    wallTimeS: number;
    steps: number;
    /** First logged step whose training accuracy reaches targetAccuracy (mean over seeds that reached it); null if none. */
    stepsToTargetAccuracy: number | null;
    /** First logged step whose loss (moving mean of 10) falls to targetLoss; null if never. */
    stepsToTargetLoss: number | null;
  };
  errorTaxonomy: Record<string, number>;
  /** Wrong answers on problems whose target has steps: a wrong step, or every step right and the answer wrong. */
  stepErrors: { calculation: number; reasoning: number; problemsWithSteps: number };
  backends: string[];
  jobs: string[];
}

export interface ComparisonReport {
  experiment: string;
  runId: string;
  generatedAt: string;
  jobs: {
    total: number;
    evaluated: number;
    missing: string[];
    failed: { jobId: string; reason: string }[];
    /** Jobs whose results this run took over from an earlier run of the same job (`pe-arena run --reuse`). */
    reused?: { jobId: string; fromRun: string }[];
  };
  rows: ComparisonRow[];
  environment: { backends: string[]; reportHost: { platform: string; arch: string; node: string } };
  options: Required<AggregateOptions>;
  warnings: string[];
}

export interface PairwiseTest {
  task: string;
  a: string;
  b: string;
  /** Paired problems (same seed, split and id). */
  n: number;
  /** A right and B wrong. */
  aOnly: number;
  /** A wrong and B right. */
  bOnly: number;
  accuracyA: number;
  accuracyB: number;
  p: number;
  pHolm: number;
  significant: boolean;
}

export interface StatisticalAnalysis {
  generatedAt: string;
  method: string;
  alpha: number;
  pairwise: PairwiseTest[];
  /** The same tests on the length-generalization split alone (when the run has one). */
  pairwiseLength: PairwiseTest[];
  seedDifferences: {
    encoding: string;
    task: string;
    perSeed: { seed: number; exactMatch: number }[];
    mean: number;
    std: number;
    range: number;
  }[];
  meanReciprocalRank: { encoding: string; mrr: number; ranks: Record<string, number> }[];
  findings: string[];
}

export const DEFAULT_AGGREGATE: Required<AggregateOptions> = {
  resamples: 1000,
  seed: 0,
  targetAccuracy: 0.9,
  targetLoss: 0.5,
  alpha: 0.05,
};

type Problem = Evaluation['problems'][number];

const TEST_SPLIT = 'test';

/** The test-split problems (all problems when none is marked test). */
function testProblems(e: Evaluation): Problem[] {
  const test = e.problems.filter((p) => p.split === TEST_SPLIT);
  return test.length > 0 ? test : e.problems;
}

function hasSteps(target: string): boolean {
  return extractSteps(target).length > 0;
}

/** Calculation error: some step `a op b = c` with c wrong. Reasoning error: every step right, the answer wrong. */
export function classifyStepError(
  p: Pick<Problem, 'prediction' | 'target' | 'symbolic' | 'correct'>,
): 'calculation' | 'reasoning' | null {
  if (p.correct || p.symbolic || !hasSteps(p.target)) return null;
  const steps = extractSteps(p.prediction);
  return steps.some((s) => !s.correct) ? 'calculation' : 'reasoning';
}

function stepsToAccuracy(metrics: readonly MetricPoint[], target: number): number | null {
  for (const m of metrics) if (typeof m.accuracy === 'number' && m.accuracy >= target) return m.step;
  return null;
}

function stepsToLoss(metrics: readonly MetricPoint[], target: number): number | null {
  const window: number[] = [];
  for (const m of metrics) {
    window.push(m.loss);
    if (window.length > 10) window.shift();
    if (window.length >= Math.min(10, metrics.length) && mean(window) <= target) return m.step;
  }
  return null;
}

function meanOrNull(xs: (number | null)[]): number | null {
  const ok = xs.filter((x): x is number => x !== null);
  return ok.length === 0 ? null : mean(ok);
}

function entropyScalar(e: Evaluation): number {
  return mean(e.attentionEntropy.flat());
}

function meanTable(tables: number[][][]): number[][] {
  const first = tables[0];
  if (first === undefined) return [];
  return first.map((row, l) => row.map((_, h) => mean(tables.map((t) => t[l]?.[h] ?? Number.NaN))));
}

function row(encoding: string, task: string, jobs: JobRecord[], opts: Required<AggregateOptions>): ComparisonRow {
  const evals = jobs.map((j) => j.evaluation).filter((e): e is Evaluation => e !== undefined);
  const boot = { resamples: opts.resamples, seed: opts.seed };
  // Per seed: problem-level units when the evaluation has them, else the job's own number as one unit.
  const unitsOf = (pick: (e: Evaluation) => Unit[]): Unit[][] => evals.map(pick);
  const em = bootstrapCI(
    unitsOf((e) =>
      e.problems.length > 0
        ? testProblems(e).map((p) => ({ num: p.correct ? 1 : 0, den: 1 }))
        : [{ num: e.exactMatch, den: 1 }],
    ),
    boot,
  );
  const sym = bootstrapCI(
    unitsOf((e) =>
      e.problems.length > 0
        ? testProblems(e).map((p) => ({ num: p.symbolic ? 1 : 0, den: 1 }))
        : [{ num: e.symbolicAccuracy, den: 1 }],
    ),
    boot,
  );
  let stepCi: Interval | null = null;
  const withSteps = evals.filter((e) => e.stepAccuracy !== null);
  if (withSteps.length > 0) {
    const units = withSteps.map((e) =>
      testProblems(e)
        .filter((p) => hasSteps(p.target))
        .map((p) => {
          const steps = extractSteps(p.prediction);
          return { num: steps.filter((s) => s.correct).length, den: steps.length };
        }),
    );
    const written = units.flat().reduce((a, u) => a + u.den, 0);
    // No step written anywhere: the evaluation scores that 0, and there is nothing to resample.
    const fallback = mean(withSteps.map((e) => e.stepAccuracy ?? 0));
    stepCi =
      written > 0 ? bootstrapCI(units, boot) : { mean: fallback, lo: fallback, hi: fallback, n: units.flat().length };
  }
  const ent = bootstrapCI(
    [evals.map((e) => ({ num: entropyScalar(e), den: 1 })).filter((u) => Number.isFinite(u.num))],
    boot,
  );
  const lengths = new Set<string>();
  for (const e of evals) {
    for (const k of Object.keys(e.perLength)) lengths.add(k);
    for (const p of e.problems) lengths.add(String(p.length));
  }
  const perLengthCi: Record<string, Interval> = {};
  const perLength: Record<string, number> = {};
  for (const len of [...lengths].sort((a, b) => Number(a) - Number(b))) {
    const units = evals.map((e) => {
      if (e.problems.length > 0)
        return e.problems.filter((p) => String(p.length) === len).map((p) => ({ num: p.correct ? 1 : 0, den: 1 }));
      const b = e.perLength[len];
      return b === undefined || b.n === 0 ? [] : [{ num: b.exactMatch * b.n, den: b.n }];
    });
    const ci = bootstrapCI(units, boot);
    if (ci.n === 0) continue;
    perLengthCi[len] = ci;
    perLength[len] = ci.mean;
  }
  const taxonomy: Record<string, number> = {};
  const stepErrors = { calculation: 0, reasoning: 0, problemsWithSteps: 0 };
  for (const e of evals) {
    for (const [k, n] of Object.entries(e.errorTaxonomy)) taxonomy[k] = (taxonomy[k] ?? 0) + n;
    for (const p of e.problems) {
      if (!hasSteps(p.target)) continue;
      stepErrors.problemsWithSteps++;
      const c = classifyStepError(p);
      if (c !== null) stepErrors[c]++;
    }
  }
  return {
    // The summary's means over seeds, with the bootstrap's means (over problems where there are some) instead.
    ...summarizeSeeds(encoding, task, evals),
    exactMatch: em.mean,
    symbolicAccuracy: sym.mean,
    perLength,
    ci: { exactMatch: em, symbolicAccuracy: sym, stepAccuracy: stepCi, attentionEntropy: ent, perLength: perLengthCi },
    attentionEntropyTable: meanTable(evals.map((e) => e.attentionEntropy)),
    efficiency: {
      parameters: mean(evals.map((e) => e.parameters)),
      tokensPerSecond: mean(evals.map((e) => e.tokensPerSecond)),
      wallTimeS: mean(evals.map((e) => e.wallTimeS)),
      steps: mean(evals.map((e) => e.steps)),
      stepsToTargetAccuracy: meanOrNull(jobs.map((j) => stepsToAccuracy(j.metrics, opts.targetAccuracy))),
      stepsToTargetLoss: meanOrNull(jobs.map((j) => stepsToLoss(j.metrics, opts.targetLoss))),
    },
    errorTaxonomy: taxonomy,
    stepErrors,
    backends: [...new Set(evals.map((e) => e.backend))],
    jobs: evals.map((e) => e.jobId),
  };
}

/** Encodings in the experiment's order, then any others found on disk. */
export function encodingOrder(run: RunData): string[] {
  return [...new Set([...run.experiment.encodings, ...run.jobs.map((j) => j.encoding)])];
}

export function taskOrder(run: RunData): string[] {
  return [...new Set([...run.experiment.tasks.map((t) => t.name), ...run.jobs.map((j) => j.task)])];
}

function reusedJobs(run: RunData): { reused?: { jobId: string; fromRun: string }[] } {
  const reused = run.jobs.flatMap((j) =>
    j.reusedFrom === undefined ? [] : [{ jobId: j.jobId, fromRun: j.reusedFrom }],
  );
  return reused.length === 0 ? {} : { reused };
}

export function buildComparison(run: RunData, options: AggregateOptions = {}): ComparisonReport {
  const opts = { ...DEFAULT_AGGREGATE, ...options };
  const rows: ComparisonRow[] = [];
  for (const task of taskOrder(run)) {
    for (const encoding of encodingOrder(run)) {
      const jobs = run.jobs.filter((j) => j.encoding === encoding && j.task === task && j.evaluation !== undefined);
      if (jobs.length > 0) rows.push(row(encoding, task, jobs, opts));
    }
  }
  const notDone = run.jobs.filter((j) => j.state !== 'done');
  return {
    experiment: run.experiment.name,
    runId: run.runId,
    generatedAt: new Date().toISOString(),
    jobs: {
      total: run.jobs.length,
      evaluated: run.jobs.length - notDone.length,
      missing: notDone.map((j) => j.jobId),
      failed: notDone
        .filter((j) => j.state === 'failed')
        .map((j) => ({ jobId: j.jobId, reason: j.reason ?? 'failed' })),
      ...reusedJobs(run),
    },
    rows,
    environment: {
      backends: [...new Set(rows.flatMap((r) => r.backends))],
      reportHost: { platform: process.platform, arch: process.arch, node: process.version },
    },
    options: opts,
    warnings: run.warnings,
  };
}

function outcomes(jobs: JobRecord[], split: string | null): Map<string, boolean> {
  const m = new Map<string, boolean>();
  for (const j of jobs) {
    for (const p of j.evaluation?.problems ?? []) {
      if (split !== null && p.split !== split) continue;
      m.set(`${j.seed}\u0000${p.split}\u0000${p.id}`, p.correct);
    }
  }
  return m;
}

function pairwiseTests(run: RunData, split: string | null, alpha: number): PairwiseTest[] {
  const tests: Omit<PairwiseTest, 'pHolm' | 'significant'>[] = [];
  const encodings = encodingOrder(run);
  for (const task of taskOrder(run)) {
    const byEnc = new Map(
      encodings.map((e) => [
        e,
        outcomes(
          run.jobs.filter((j) => j.encoding === e && j.task === task && j.evaluation),
          split,
        ),
      ]),
    );
    for (let i = 0; i < encodings.length; i++) {
      for (let k = i + 1; k < encodings.length; k++) {
        const a = encodings[i] as string;
        const b = encodings[k] as string;
        const ma = byEnc.get(a) as Map<string, boolean>;
        const mb = byEnc.get(b) as Map<string, boolean>;
        const d = discordant(ma, mb);
        if (d.n === 0) continue;
        let ra = 0;
        let rb = 0;
        for (const [key, v] of ma) {
          const w = mb.get(key);
          if (w === undefined) continue;
          if (v) ra++;
          if (w) rb++;
        }
        tests.push({
          task,
          a,
          b,
          n: d.n,
          aOnly: d.b,
          bOnly: d.c,
          accuracyA: ra / d.n,
          accuracyB: rb / d.n,
          p: mcnemarExact(d.b, d.c).p,
        });
      }
    }
  }
  const adjusted = holm(tests.map((t) => t.p));
  return tests.map((t, i) => ({ ...t, pHolm: adjusted[i] as number, significant: (adjusted[i] as number) < alpha }));
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a');
const pval = (p: number): string => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));

export function buildAnalysis(
  run: RunData,
  report: ComparisonReport,
  options: AggregateOptions = {},
): StatisticalAnalysis {
  const opts = { ...DEFAULT_AGGREGATE, ...options };
  const pairwise = pairwiseTests(run, null, opts.alpha);
  const hasLengthSplit = run.jobs.some((j) => j.evaluation?.problems.some((p) => p.split === 'length'));
  const pairwiseLength = hasLengthSplit ? pairwiseTests(run, 'length', opts.alpha) : [];
  const seedDifferences = report.rows.map((r) => {
    const perSeed = run.jobs
      .filter((j) => j.encoding === r.encoding && j.task === r.task && j.evaluation)
      .map((j) => ({ seed: j.seed, exactMatch: (j.evaluation as Evaluation).exactMatch }))
      .sort((a, b) => a.seed - b.seed);
    return { encoding: r.encoding, task: r.task, perSeed, ...seedSpread(perSeed.map((s) => s.exactMatch)) };
  });
  const tasks = taskOrder(run).filter((t) => report.rows.some((r) => r.task === t));
  const encodings = encodingOrder(run);
  const contests = tasks.map(
    (t) => new Map(report.rows.filter((r) => r.task === t).map((r) => [r.encoding, r.exactMatch])),
  );
  const mrr = meanReciprocalRank(contests, encodings);
  const meanReciprocal = encodings
    .map((encoding) => {
      const ranks: Record<string, number> = {};
      tasks.forEach((t, i) => {
        const scores = contests[i] as Map<string, number>;
        const s = scores.get(encoding);
        if (s !== undefined && Number.isFinite(s)) ranks[t] = 1 + [...scores.values()].filter((x) => x > s).length;
      });
      return { encoding, mrr: mrr.get(encoding) ?? 0, ranks };
    })
    .sort((a, b) => b.mrr - a.mrr);
  const analysis: StatisticalAnalysis = {
    generatedAt: new Date().toISOString(),
    method:
      `Exact McNemar tests (two-sided binomial on discordant pairs) between every pair of encodings on the same task, pairing problems by seed, split and id; ` +
      `Holm step-down correction over all ${pairwise.length} tests; significant when the adjusted p < ${opts.alpha}. ` +
      `Confidence intervals: percentile bootstrap, ${opts.resamples} resamples, seed ${opts.seed}, resampling seeds and then problems within each seed. ` +
      `MRR: per task, encodings ranked by exact match (ties share the better rank); mean of 1/rank over tasks.`,
    alpha: opts.alpha,
    pairwise,
    pairwiseLength,
    seedDifferences,
    meanReciprocalRank: meanReciprocal,
    findings: [],
  };
  analysis.findings = findings(run, report, analysis);
  return analysis;
}

function findings(run: RunData, report: ComparisonReport, analysis: StatisticalAnalysis): string[] {
  const out: string[] = [];
  if (report.rows.length === 0) {
    out.push('No job has an evaluation yet, so there is nothing to compare.');
  }
  for (const task of taskOrder(run)) {
    const rows = report.rows.filter((r) => r.task === task).sort((a, b) => b.exactMatch - a.exactMatch);
    const best = rows[0];
    const second = rows[1];
    if (best === undefined) continue;
    const tied = rows.filter((r) => r.exactMatch === best.exactMatch);
    if (tied.length > 1) {
      out.push(
        `On ${task}, ${tied.map((r) => r.encoding).join(', ')} tie for the highest exact match at ${pct(best.exactMatch)}: no encoding stands out.`,
      );
    }
    let line = `On ${task}, ${best.encoding} has the highest exact match, ${pct(best.exactMatch)} (95% CI ${pct(best.ci.exactMatch.lo)}–${pct(best.ci.exactMatch.hi)}, ${best.seeds} seed(s))`;
    if (tied.length > 1) line = '';
    else if (second !== undefined) {
      const test = analysis.pairwise.find(
        (t) =>
          t.task === task &&
          ((t.a === best.encoding && t.b === second.encoding) || (t.b === best.encoding && t.a === second.encoding)),
      );
      line += `, ahead of ${second.encoding} at ${pct(second.exactMatch)} by ${((best.exactMatch - second.exactMatch) * 100).toFixed(1)} points`;
      if (test !== undefined)
        line += ` (McNemar p = ${pval(test.p)}, Holm-adjusted ${pval(test.pHolm)}: ${test.significant ? 'significant' : 'not significant'} at ${analysis.alpha})`;
    }
    if (line !== '') out.push(line + '.');
    const worst = rows[rows.length - 1];
    if (worst !== undefined && worst.exactMatch < best.exactMatch)
      out.push(`On ${task}, ${worst.encoding} is last with ${pct(worst.exactMatch)}.`);
    // Length generalization: the length split when there is one, else the longest bucket every encoding has.
    // An under-trained model is flagged (lengthFindings), never ranked as if it had learned the task.
    const trainedRows = rows.filter((r) => r.underTrainedSeeds === 0);
    const lengthRows = trainedRows
      .map((r) => {
        const jobs = run.jobs.filter((j) => j.encoding === r.encoding && j.task === task && j.evaluation);
        const probs = jobs.flatMap((j) => (j.evaluation as Evaluation).problems.filter((p) => p.split === 'length'));
        return {
          r,
          n: probs.length,
          acc: probs.length === 0 ? Number.NaN : probs.filter((p) => p.correct).length / probs.length,
        };
      })
      .filter((x) => x.n > 0)
      .sort((a, b) => b.acc - a.acc);
    const lb = lengthRows[0];
    const ls = lengthRows[1];
    if (lb !== undefined && ls !== undefined && lb.acc === ls.acc) {
      out.push(
        `On ${task}, no encoding generalizes further than another on the length split: ${lengthRows
          .filter((x) => x.acc === lb.acc)
          .map((x) => x.r.encoding)
          .join(', ')} tie at ${pct(lb.acc)}.`,
      );
    } else if (lb !== undefined && ls !== undefined) {
      const t = analysis.pairwiseLength.find(
        (x) => x.task === task && [x.a, x.b].includes(lb.r.encoding) && [x.a, x.b].includes(ls.r.encoding),
      );
      out.push(
        `On ${task}, ${lb.r.encoding} generalizes furthest to longer problems: ${pct(lb.acc)} exact match on the length split (${lb.n} problems) against ${pct(ls.acc)} for ${ls.r.encoding}` +
          (t === undefined
            ? '.'
            : ` (McNemar p = ${pval(t.p)}, Holm-adjusted ${pval(t.pHolm)}: ${t.significant ? 'significant' : 'not significant'} at ${analysis.alpha}).`),
      );
    } else if (trainedRows.length > 1 && !analysis.pairwiseLength.some((t) => t.task === task)) {
      const common = Object.keys(trainedRows[0]?.perLength ?? {})
        .filter((k) => trainedRows.every((r) => r.perLength[k] !== undefined))
        .sort((a, b) => Number(b) - Number(a))[0];
      if (common !== undefined) {
        const ranked = [...trainedRows].sort((a, b) => (b.perLength[common] ?? 0) - (a.perLength[common] ?? 0));
        const top = ranked[0] as ComparisonRow;
        const next = ranked[1] as ComparisonRow;
        out.push(
          `On ${task}, at the longest length every encoding was tested on (${common}), ${top.encoding} leads with ${pct(top.perLength[common] ?? Number.NaN)} against ${pct(next.perLength[common] ?? Number.NaN)} for ${next.encoding}.`,
        );
      }
    }
    const fastest = [...rows].sort((a, b) => b.efficiency.tokensPerSecond - a.efficiency.tokensPerSecond)[0];
    if (fastest !== undefined && rows.length > 1)
      out.push(
        `On ${task}, ${fastest.encoding} trains fastest at ${fastest.efficiency.tokensPerSecond.toFixed(0)} tokens/s.`,
      );
  }
  out.push(...lengthFindings(report.rows, trainedLengthsByTask(run.experiment.tasks)));
  const sig = analysis.pairwise.filter((t) => t.significant);
  if (analysis.pairwise.length > 0)
    out.push(
      `${sig.length} of ${analysis.pairwise.length} pairwise differences are significant after Holm correction.`,
    );
  const top = analysis.meanReciprocalRank[0];
  if (top !== undefined && report.rows.length > 0) {
    const leaders = analysis.meanReciprocalRank.filter((m) => m.mrr === top.mrr).map((m) => m.encoding);
    out.push(
      `Across tasks, ${leaders.join(', ')} ${leaders.length > 1 ? 'share' : 'has'} the best mean reciprocal rank (${top.mrr.toFixed(2)}).`,
    );
  }
  const spread = [...analysis.seedDifferences].filter((s) => s.perSeed.length > 1).sort((a, b) => b.range - a.range)[0];
  if (spread !== undefined)
    out.push(
      `Seeds matter most for ${spread.encoding} on ${spread.task}: exact match ranges over ${(spread.range * 100).toFixed(1)} points across ${spread.perSeed.length} seeds.`,
    );
  if (report.jobs.missing.length > 0)
    out.push(
      `${report.jobs.missing.length} of ${report.jobs.total} job(s) have no evaluation (${report.jobs.missing.join(', ')}); their encodings are compared on what exists.`,
    );
  return out;
}
