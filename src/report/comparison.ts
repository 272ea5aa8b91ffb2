// The one comparison builder: per encoding and task, the mean over seeds and the spread between seeds. The
// coordinator writes it at the end of a run (final_comparison/comparison_report.json, the table it prints); the
// full report (aggregate.ts) builds its rows on it and adds intervals and tests. Pure: no TensorFlow, no files.
import type { Evaluation } from '../../protocol/messages.ts';
import { mean, std } from './stats.ts';

export interface ComparisonSummaryRow {
  encoding: string;
  task: string;
  seeds: number;
  exactMatch: number;
  exactMatchStd: number;
  symbolicAccuracy: number;
  /** Exact match per length bucket, mean over seeds. */
  perLength: Record<string, number>;
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
  return {
    encoding,
    task,
    seeds: evals.length,
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

/** The table printed at the end of a run. */
export function formatComparisonSummary(report: ComparisonSummary): string {
  const head = ['encoding', 'task', 'seeds', 'exact', '±', 'symbolic', 'per length (exact)', 'tok/s', 'wall s'];
  const body = [...report.rows]
    .sort((a, b) => b.exactMatch - a.exactMatch)
    .map((r) => [
      r.encoding,
      r.task,
      String(r.seeds),
      pct(r.exactMatch),
      pct(r.exactMatchStd),
      pct(r.symbolicAccuracy),
      Object.entries(r.perLength)
        .map(([k, v]) => `${k}:${Math.round(v * 100)}`)
        .join(' '),
      r.tokensPerSecond.toFixed(0),
      r.wallTimeS.toFixed(1),
    ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  if (report.jobs.missing.length > 0) out.push(`missing evaluations: ${report.jobs.missing.join(', ')}`);
  return out.join('\n');
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-';
}
