// Where results land: batched metrics to jobs/<jobId>/metrics.jsonl, evaluations to evaluation.json, and at the
// end final_comparison/comparison_report.json plus the comparison table.
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Evaluation, JobId, MetricPoint } from '../protocol/messages.ts';
import { atomicWrite } from './checkpoint-store.ts';
import type { Experiment } from './experiment.ts';

export class MetricsSink {
  private readonly streams = new Map<JobId, WriteStream>();
  /** Lines waiting per job: written once a second (or at 64 KiB), not once per message, to spare syscalls. */
  private readonly buffered = new Map<JobId, string>();
  private readonly flusher: NodeJS.Timeout;

  constructor(private readonly runDir: string) {
    this.flusher = setInterval(() => this.flush(), 1000);
    this.flusher.unref();
  }

  /** Metrics are many and losing the last second of them on a crash is harmless; the journal carries the rest. */
  write(jobId: JobId, epoch: number, points: MetricPoint[]): void {
    let text = this.buffered.get(jobId) ?? '';
    for (const p of points) text += JSON.stringify({ epoch, ...p }) + '\n';
    if (text.length >= 65536) {
      this.buffered.delete(jobId);
      this.stream(jobId).write(text);
    } else {
      this.buffered.set(jobId, text);
    }
  }

  flush(): void {
    for (const [jobId, text] of this.buffered) this.stream(jobId).write(text);
    this.buffered.clear();
  }

  private stream(jobId: JobId): WriteStream {
    let s = this.streams.get(jobId);
    if (s === undefined) {
      mkdirSync(join(this.runDir, 'jobs', jobId), { recursive: true });
      s = createWriteStream(join(this.runDir, 'jobs', jobId, 'metrics.jsonl'), { flags: 'a' });
      s.on('error', () => {
        // A full disk must not crash the coordinator.
      });
      this.streams.set(jobId, s);
    }
    return s;
  }

  writeEvaluation(jobId: JobId, evaluation: Evaluation): void {
    atomicWrite(
      join(this.runDir, 'jobs', jobId, 'evaluation.json'),
      Buffer.from(JSON.stringify(evaluation, null, 2) + '\n'),
    );
  }

  readEvaluation(jobId: JobId): Evaluation | undefined {
    const f = join(this.runDir, 'jobs', jobId, 'evaluation.json');
    if (!existsSync(f)) return undefined;
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as Evaluation;
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flusher);
    this.flush();
    const all = [...this.streams.values()];
    this.streams.clear();
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.end(resolve))));
  }

  /** Aggregate every evaluation (mean over seeds), write final_comparison/comparison_report.json, return it. */
  writeComparison(experiment: Experiment): ComparisonReport {
    const evaluations: Evaluation[] = [];
    for (const job of experiment.jobs) {
      const e = this.readEvaluation(job.jobId);
      if (e) evaluations.push(e);
    }
    const report = buildComparison(experiment, evaluations);
    atomicWrite(
      join(this.runDir, 'final_comparison', 'comparison_report.json'),
      Buffer.from(JSON.stringify(report, null, 2) + '\n'),
    );
    return report;
  }
}

export interface ComparisonRow {
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

export interface ComparisonReport {
  experiment: string;
  runId: string;
  generatedAt: string;
  jobs: { total: number; evaluated: number; missing: string[] };
  rows: ComparisonRow[];
}

export function buildComparison(experiment: Experiment, evaluations: Evaluation[]): ComparisonReport {
  const rows: ComparisonRow[] = [];
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
      if (g.length === 0) continue;
      const perLength: Record<string, number> = {};
      const lengths = new Set(g.flatMap((e) => Object.keys(e.perLength ?? {})));
      for (const len of [...lengths].sort((a, b) => Number(a) - Number(b))) {
        perLength[len] = mean(
          g.map((e) => e.perLength?.[len]?.exactMatch).filter((x): x is number => typeof x === 'number'),
        );
      }
      rows.push({
        encoding,
        task,
        seeds: g.length,
        exactMatch: mean(g.map((e) => e.exactMatch)),
        exactMatchStd: std(g.map((e) => e.exactMatch)),
        symbolicAccuracy: mean(g.map((e) => e.symbolicAccuracy)),
        perLength,
        tokensPerSecond: mean(g.map((e) => e.tokensPerSecond)),
        wallTimeS: mean(g.map((e) => e.wallTimeS)),
      });
    }
  }
  const have = new Set(evaluations.map((e) => e.jobId));
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
export function formatComparison(report: ComparisonReport): string {
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

function mean(xs: number[]): number {
  const ok = xs.filter((x) => Number.isFinite(x));
  return ok.length === 0 ? Number.NaN : ok.reduce((a, b) => a + b, 0) / ok.length;
}

function std(xs: number[]): number {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length < 2) return 0;
  const m = mean(ok);
  return Math.sqrt(ok.reduce((a, b) => a + (b - m) ** 2, 0) / (ok.length - 1));
}
