// The report of a run: writeReport(runDir) reads runs/<runId>/, aggregates, tests, plots, and writes
// final_comparison/{comparison_report.json, statistical_analysis.json, plots/*.png, report.html, summary.md}
// (and report.pdf with `pdf: true` where chromium is installed). A run with failed or missing jobs still gets
// a report that says what is missing.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  buildAnalysis,
  buildComparison,
  type AggregateOptions,
  type ComparisonReport,
  type StatisticalAnalysis,
} from './aggregate.ts';
import { renderHtml, renderMarkdown } from './html.ts';
import { loadRun, type JobRecord, type RunData } from '../run-dir/load-run.ts';
import { trainedLengthsByTask } from './length-generalization.ts';
import { renderPlots, type AttentionSample } from './plots.ts';

export type { ComparisonReport, ComparisonRow, StatisticalAnalysis, PairwiseTest } from './aggregate.ts';
export { buildAnalysis, buildComparison } from './aggregate.ts';
export { loadRun, type RunData, type JobRecord } from '../run-dir/load-run.ts';

export interface ReportOptions extends AggregateOptions {
  /** Where to write (default <runDir>/final_comparison). */
  outDir?: string;
  /**
   * Load each encoding's final model to draw its attention heatmap (default true). This imports TensorFlow.js
   * lazily; pass false in a process that must stay free of it, or when models are not on this disk.
   */
  attention?: boolean;
  /** Also print report.html to report.pdf with the system chromium (default false). */
  pdf?: boolean;
  log?: (line: string) => void;
}

export interface ReportSummary {
  runDir: string;
  outDir: string;
  files: string[];
  jobs: { total: number; evaluated: number; missing: string[] };
  plots: string[];
  /** Plots not drawn and why; PDF or attention problems too. */
  skipped: string[];
  findings: string[];
  comparison: ComparisonReport;
  analysis: StatisticalAnalysis;
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

/** One heatmap per encoding: its first job with a model, on that job's first held-out problem with its target. */
export async function attentionSamples(
  run: RunData,
  log: (line: string) => void = () => {},
): Promise<{ samples: AttentionSample[]; skipped: string[] }> {
  const samples: AttentionSample[] = [];
  const skipped: string[] = [];
  const byEncoding = new Map<string, JobRecord>();
  for (const j of run.jobs) if (j.modelFile !== undefined && !byEncoding.has(j.encoding)) byEncoding.set(j.encoding, j);
  for (const j of run.jobs)
    if (!byEncoding.has(j.encoding) && !skipped.some((s) => s.startsWith(`attention-${j.encoding}`)))
      skipped.push(`attention-${j.encoding}.png: no model file for ${j.encoding}`);
  if (byEncoding.size === 0) return { samples, skipped };
  const { loadModelFile, attentionWith } = await import('../serve/inference.ts');
  const { createSource, drawExamples } = await import('../data/tasks.ts');
  for (const [encoding, job] of byEncoding) {
    try {
      const loaded = await loadModelFile(job.modelFile as string, encoding);
      try {
        const [example] = drawExamples(createSource(loaded.job.task, loaded.job.seed, 'test'), 1);
        if (example === undefined) throw new Error('the task gave no test example');
        // Teacher-forced on prompt + target, so every encoding is shown on the same, correct sequence.
        const chosen =
          attentionWithTarget(loaded, example.prompt + example.target, attentionWith) ??
          attentionWith(loaded, example.prompt, false);
        samples.push({
          encoding,
          jobId: job.jobId,
          text: example.prompt + example.target,
          tokens: chosen.tokens,
          weights: chosen.weights,
        });
      } finally {
        loaded.model.dispose();
      }
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      log(`attention heatmap for ${encoding} skipped: ${why}`);
      skipped.push(`attention-${encoding}.png: ${why}`);
    }
  }
  return { samples, skipped };
}

type AttentionFn = typeof import('../serve/inference.ts').attentionWith;

function attentionWithTarget(
  loaded: Parameters<AttentionFn>[0],
  text: string,
  fn: AttentionFn,
): ReturnType<AttentionFn> | null {
  // formatPrompt would re-add '=' or a newline after the target; the raw text is already the model's format.
  try {
    const task = loaded.job.task;
    const raw = {
      ...loaded,
      job: { ...loaded.job, task: { name: 'jsonl', params: { ...task.params, format: 'plain' } } },
    };
    return fn(raw, text, false);
  } catch {
    return null;
  }
}

export async function writeReport(runDir: string, options: ReportOptions = {}): Promise<ReportSummary> {
  const log = options.log ?? (() => {});
  const dir = resolve(runDir);
  const run = loadRun(dir);
  const outDir = resolve(options.outDir ?? join(dir, 'final_comparison'));
  const plotDir = join(outDir, 'plots');
  await mkdir(plotDir, { recursive: true });
  const comparison = buildComparison(run, options);
  const analysis = buildAnalysis(run, comparison, options);
  const skipped: string[] = [];
  let samples: AttentionSample[] = [];
  if (options.attention !== false) {
    const a = await attentionSamples(run, log);
    samples = a.samples;
    skipped.push(...a.skipped);
  }
  const rendered = await renderPlots(comparison, run.jobs, samples, trainedLengthsByTask(run.experiment.tasks));
  skipped.push(...rendered.skipped);
  const files: string[] = [];
  const put = async (name: string, data: string | Uint8Array): Promise<void> => {
    const file = join(outDir, name);
    await writeAtomic(file, data);
    files.push(file);
  };
  // Plots from an earlier report of the same run would otherwise linger next to the new ones.
  await rm(plotDir, { recursive: true, force: true });
  await mkdir(plotDir, { recursive: true });
  for (const p of rendered.plots) await put(join('plots', p.name), p.png);
  await put('comparison_report.json', JSON.stringify(comparison, null, 2) + '\n');
  await put('statistical_analysis.json', JSON.stringify(analysis, null, 2) + '\n');
  await put('report.html', renderHtml(run, comparison, analysis, rendered.plots, skipped));
  await put('summary.md', renderMarkdown(run, comparison, analysis, rendered.plots));
  if (options.pdf === true) {
    try {
      const { htmlToPdf } = await import('./browser.ts');
      await htmlToPdf(join(outDir, 'report.html'), join(outDir, 'report.pdf'));
      files.push(join(outDir, 'report.pdf'));
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      log(`report.pdf skipped: ${why}`);
      skipped.push(`report.pdf: ${why}`);
    }
  }
  log(`report written to ${outDir} (${rendered.plots.length} plots)`);
  return {
    runDir: dir,
    outDir,
    files,
    jobs: { total: comparison.jobs.total, evaluated: comparison.jobs.evaluated, missing: comparison.jobs.missing },
    plots: rendered.plots.map((p) => join(plotDir, p.name)),
    skipped,
    findings: analysis.findings,
    comparison,
    analysis,
  };
}
