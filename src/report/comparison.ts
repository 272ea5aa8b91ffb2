// The one comparison builder: per encoding and task, the mean over seeds and the spread between seeds. The
// coordinator writes it at the end of a run (final_comparison/comparison_report.json, the table it prints); the
// full report (aggregate.ts) builds its rows on it and adds intervals and tests. Pure: no TensorFlow, no files.
import type { Evaluation } from '../../protocol/messages.ts';
import { longestPassingLength } from '../eval/longest-length.ts';
import { mean, std } from './stats.ts';

/** In-distribution exact match below this: the model is under-trained, and its length figures are not ranked. */
export const UNDER_TRAINED_BELOW = 0.95;
/** Exact match a length must reach to count as carried (Scores.longestLength90). */
export const LENGTH_PASS = 0.9;

export interface ComparisonSummaryRow {
  encoding: string;
  task: string;
  seeds: number;
  exactMatch: number;
  exactMatchStd: number;
  symbolicAccuracy: number;
  /** Exact match per length bucket, mean over seeds. */
  perLength: Record<string, number>;
  /** Digit accuracy per length bucket, mean over the seeds that scored it. */
  digitAccuracyPerLength: Record<string, number>;
  /** Per seed (in evaluation order): the longest length with >= 90% exact match from the shortest up; null: none. */
  longestLength90: (number | null)[];
  /** Seeds whose in-distribution exact match is below UNDER_TRAINED_BELOW: the row is flagged, never ranked. */
  underTrainedSeeds: number;
  tokensPerSecond: number;
  wallTimeS: number;
}

export interface ComparisonSummary {
  experiment: string;
  runId: string;
  generatedAt: string;
  jobs: { total: number; evaluated: number; missing: string[] };
  rows: ComparisonSummaryRow[];
}

/** What the summary needs of an experiment: its name, its encodings in order, and its jobs. */
export interface ComparedExperiment {
  name: string;
  encodings: readonly string[];
  jobs: readonly { jobId: string; encoding: string; runId: string }[];
}

/** The spread of one number over seeds. */
export interface SeedSpread {
  mean: number;
  std: number;
  range: number;
}

export function seedSpread(values: readonly number[]): SeedSpread {
  return {
    mean: mean(values),
    std: std(values),
    range: values.length === 0 ? 0 : Math.max(...values) - Math.min(...values),
  };
}

/** One encoding x task: means over the seeds' evaluations, the seed spread of exact match, per-length means. */
export function summarizeSeeds(encoding: string, task: string, evals: readonly Evaluation[]): ComparisonSummaryRow {
  const perLength: Record<string, number> = {};
  const lengths = new Set(evals.flatMap((e) => Object.keys(e.perLength ?? {})));
  for (const len of [...lengths].sort((a, b) => Number(a) - Number(b))) {
    perLength[len] = mean(
      evals.map((e) => e.perLength?.[len]?.exactMatch).filter((x): x is number => typeof x === 'number'),
    );
  }
  const digitAccuracyPerLength: Record<string, number> = {};
  for (const len of Object.keys(perLength)) {
    const scored = evals
      .map((e) => e.perLength?.[len]?.digitAccuracy)
      .filter((x): x is number => typeof x === 'number');
    if (scored.length > 0) digitAccuracyPerLength[len] = mean(scored);
  }
  return {
    encoding,
    task,
    seeds: evals.length,
    digitAccuracyPerLength,
    // Older evaluations carry no longestLength90: the same figure from their per-length exact match.
    longestLength90: evals.map((e) => e.longestLength90 ?? longestPassingLength(e.perLength ?? {}, LENGTH_PASS)),
    underTrainedSeeds: evals.filter((e) => !(e.exactMatch >= UNDER_TRAINED_BELOW)).length,
    exactMatch: mean(evals.map((e) => e.exactMatch)),
    exactMatchStd: std(evals.map((e) => e.exactMatch)),
    symbolicAccuracy: mean(evals.map((e) => e.symbolicAccuracy)),
    perLength,
    tokensPerSecond: mean(evals.map((e) => e.tokensPerSecond)),
    wallTimeS: mean(evals.map((e) => e.wallTimeS)),
  };
}

/** Every evaluation, grouped by encoding and task (the task as the jobId spells it), mean over seeds. */
export function buildComparisonSummary(
  experiment: ComparedExperiment,
  evaluations: readonly Evaluation[],
): ComparisonSummary {
  const rows: ComparisonSummaryRow[] = [];
  const taskKey = (jobId: string): string => /^[a-z0-9]+-(.+)-s\d+$/.exec(jobId)?.[1] ?? 'task';
  const groups = new Map<string, Evaluation[]>();
  for (const e of evaluations) {
    const key = `${e.encoding}\0${taskKey(e.jobId)}`;
    const g = groups.get(key) ?? [];
    g.push(e);
    groups.set(key, g);
  }
  for (const encoding of experiment.encodings) {
    const taskKeys = [...new Set(experiment.jobs.filter((j) => j.encoding === encoding).map((j) => taskKey(j.jobId)))];
    for (const task of taskKeys) {
      const g = groups.get(`${encoding}\0${task}`) ?? [];
      if (g.length > 0) rows.push(summarizeSeeds(encoding, task, g));
    }
  }
  const have = new Set<string>(evaluations.map((e) => e.jobId));
  return {
    experiment: experiment.name,
    runId: experiment.jobs[0]?.runId ?? '',
    generatedAt: new Date().toISOString(),
    jobs: {
      total: experiment.jobs.length,
      evaluated: have.size,
      missing: experiment.jobs.map((j) => j.jobId).filter((id) => !have.has(id)),
    },
    rows,
  };
}

/**
 * Rows in rank order: models trained to UNDER_TRAINED_BELOW in distribution first, by exact match, then the
 * under-trained ones (flagged, not ranked among the others).
 */
export function rankRows<R extends Pick<ComparisonSummaryRow, 'exactMatch' | 'underTrainedSeeds'>>(
  rows: readonly R[],
): R[] {
  return [...rows].sort(
    (a, b) => Number(a.underTrainedSeeds > 0) - Number(b.underTrainedSeeds > 0) || b.exactMatch - a.exactMatch,
  );
}

/** The longest length with >= 90% exact match over seeds: "7" when every seed agrees, "6-8" otherwise, "-" for none. */
export function formatLongestLength(perSeed: readonly (number | null)[]): string {
  if (perSeed.length === 0) return '-';
  const values = perSeed.map((x) => x ?? 0);
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const show = (x: number): string => (x === 0 ? 'none' : String(x));
  return lo === hi ? show(lo) : `${show(lo)}-${show(hi)}`;
}

/** The table printed at the end of a run. */
export function formatComparisonSummary(report: ComparisonSummary): string {
  const head = [
    'encoding',
    'task',
    'seeds',
    'exact',
    '±',
    'symbolic',
    'longest 90%',
    'per length (exact)',
    'tok/s',
    'wall s',
    'note',
  ];
  const body = rankRows(report.rows).map((r) => [
    r.encoding,
    r.task,
    String(r.seeds),
    pct(r.exactMatch),
    pct(r.exactMatchStd),
    pct(r.symbolicAccuracy),
    formatLongestLength(r.longestLength90),
    Object.entries(r.perLength)
      .map(([k, v]) => `${k}:${Math.round(v * 100)}`)
      .join(' '),
    r.tokensPerSecond.toFixed(0),
    r.wallTimeS.toFixed(1),
    underTrainedNote(r),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  if (report.rows.some((r) => r.underTrainedSeeds > 0))
    out.push(
      `under-trained: below ${pct(UNDER_TRAINED_BELOW)} exact match in distribution on some seed; listed last, not ranked`,
    );
  if (report.jobs.missing.length > 0) out.push(`missing evaluations: ${report.jobs.missing.join(', ')}`);
  return out.join('\n');
}

/** "under-trained (2/3 seeds)" for a flagged row, "" otherwise. */
export function underTrainedNote(r: Pick<ComparisonSummaryRow, 'underTrainedSeeds' | 'seeds'>): string {
  return r.underTrainedSeeds > 0 ? `under-trained (${r.underTrainedSeeds}/${r.seeds} seeds)` : '';
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-';
}
