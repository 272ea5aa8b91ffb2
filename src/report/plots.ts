// The report's plots: Vega-Lite specs compiled by vega-lite, rendered to SVG by vega's headless renderer, then
// rasterized to PNG by resvg (Rust, shipped in npm). No browser and no hand-drawn pixels.
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import type { ComparisonReport, ComparisonRow } from './aggregate.ts';
import { RenderError } from './errors.ts';
import { lengthGeneralizationSpec } from './length-generalization.ts';
import type { JobRecord } from '../run-dir/load-run.ts';

const FONT = 'DejaVu Sans';
const CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: '#ddd' },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11 },
};
/** Curves longer than this are thinned for the training-curve plot (the file stays small, the shape stays). */
const MAX_CURVE_POINTS = 400;

export interface PlotFile {
  /** File name under plots/. */
  name: string;
  title: string;
  png: Uint8Array;
}

/** One example's attention, for the heatmap: mean over heads of the last layer. */
export interface AttentionSample {
  encoding: string;
  jobId: string;
  text: string;
  tokens: string[];
  /** [query][key] */
  weights: number[][];
}

/** Compiles a Vega-Lite spec and renders it to PNG bytes (2x scale). */
export async function renderPng(spec: TopLevelSpec, scale = 2): Promise<Uint8Array> {
  let svg: string;
  try {
    const compiled = vl.compile({ ...spec, config: { ...CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
    try {
      svg = await view.toSVG();
    } finally {
      view.finalize();
    }
  } catch (cause) {
    throw new RenderError(
      `could not render plot "${String(spec.title ?? spec.description ?? 'untitled')}": ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
  const resvg = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: FONT },
    fitTo: { mode: 'zoom', value: scale },
  });
  return resvg.render().asPng();
}

const METRIC_LABELS = {
  exactMatch: 'exact match',
  symbolicAccuracy: 'symbolic',
  stepAccuracy: 'reasoning steps',
} as const;

export function accuracySpec(rows: readonly ComparisonRow[]): TopLevelSpec {
  const values = rows.flatMap((r) =>
    (Object.keys(METRIC_LABELS) as (keyof typeof METRIC_LABELS)[]).flatMap((k) => {
      const ci = r.ci[k];
      if (ci === null || !Number.isFinite(ci.mean)) return [];
      return [{ encoding: r.encoding, task: r.task, metric: METRIC_LABELS[k], mean: ci.mean, lo: ci.lo, hi: ci.hi }];
    }),
  );
  return {
    title: 'Accuracy by encoding (95% bootstrap CI)',
    data: { values },
    facet: {
      column: { field: 'metric', type: 'nominal', title: null },
      row: { field: 'task', type: 'nominal', title: 'task' },
    },
    spec: {
      width: 220,
      height: 180,
      layer: [
        {
          mark: 'bar',
          encoding: {
            x: { field: 'encoding', type: 'nominal', sort: null },
            y: { field: 'mean', type: 'quantitative', title: 'accuracy', scale: { domain: [0, 1] } },
            color: { field: 'encoding', type: 'nominal', legend: null },
          },
        },
        {
          mark: { type: 'errorbar', ticks: true },
          encoding: {
            x: { field: 'encoding', type: 'nominal', sort: null },
            y: { field: 'lo', type: 'quantitative', title: 'accuracy' },
            y2: { field: 'hi' },
          },
        },
      ],
    },
  } as TopLevelSpec;
}

function thin<T>(xs: readonly T[], max: number): T[] {
  if (xs.length <= max) return [...xs];
  const stride = xs.length / max;
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(xs[Math.floor(i * stride)] as T);
  out.push(xs[xs.length - 1] as T);
  return out;
}

export function trainingSpec(jobs: readonly JobRecord[]): TopLevelSpec {
  const values = jobs.flatMap((j) =>
    thin(j.metrics, MAX_CURVE_POINTS)
      .filter((p) => Number.isFinite(p.loss))
      .map((p) => ({ encoding: j.encoding, task: j.task, job: j.jobId, step: p.step, loss: p.loss })),
  );
  return {
    title: 'Training curves: loss against step',
    data: { values },
    facet: { column: { field: 'task', type: 'nominal' } },
    spec: {
      width: 420,
      height: 260,
      mark: { type: 'line', strokeWidth: 1.5, opacity: 0.85 },
      encoding: {
        x: { field: 'step', type: 'quantitative' },
        y: { field: 'loss', type: 'quantitative', scale: { type: 'log' } },
        color: { field: 'encoding', type: 'nominal' },
        detail: { field: 'job', type: 'nominal' },
      },
    },
  } as TopLevelSpec;
}

export function efficiencySpec(rows: readonly ComparisonRow[]): TopLevelSpec {
  const values = rows.flatMap((r) => {
    const e = r.efficiency;
    const items: [string, number | null][] = [
      ['tokens/s (train)', e.tokensPerSecond],
      ['wall time (s)', e.wallTimeS],
      ['parameters', e.parameters],
      ['steps to target loss', e.stepsToTargetLoss],
    ];
    return items
      .filter((x): x is [string, number] => x[1] !== null && Number.isFinite(x[1]))
      .map(([measure, value]) => ({ encoding: r.encoding, task: r.task, measure, value }));
  });
  return {
    title: 'Efficiency',
    data: { values },
    facet: { column: { field: 'measure', type: 'nominal', title: null }, row: { field: 'task', type: 'nominal' } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 180,
      height: 160,
      mark: 'bar',
      encoding: {
        x: { field: 'encoding', type: 'nominal', sort: null },
        y: { field: 'value', type: 'quantitative', title: null },
        color: { field: 'encoding', type: 'nominal', legend: null },
      },
    },
  } as TopLevelSpec;
}

export function errorSpec(rows: readonly ComparisonRow[]): TopLevelSpec {
  const values = rows.flatMap((r) => [
    ...Object.entries(r.errorTaxonomy).map(([cls, count]) => ({
      encoding: r.encoding,
      task: r.task,
      view: 'wrong answers by class',
      cls,
      count,
    })),
    ...(r.stepErrors.problemsWithSteps > 0
      ? [
          {
            encoding: r.encoding,
            task: r.task,
            view: 'problems with steps',
            cls: 'calculation (a wrong step)',
            count: r.stepErrors.calculation,
          },
          {
            encoding: r.encoding,
            task: r.task,
            view: 'problems with steps',
            cls: 'reasoning (steps right, answer wrong)',
            count: r.stepErrors.reasoning,
          },
        ]
      : []),
  ]);
  return {
    title: 'Error analysis',
    data: { values },
    facet: { column: { field: 'view', type: 'nominal', title: null }, row: { field: 'task', type: 'nominal' } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 260,
      height: 200,
      mark: 'bar',
      encoding: {
        x: { field: 'encoding', type: 'nominal', sort: null },
        y: { field: 'count', type: 'quantitative', stack: 'zero', title: 'problems' },
        color: { field: 'cls', type: 'nominal', title: 'error class' },
      },
    },
  } as TopLevelSpec;
}

const shown = (t: string): string => (t === ' ' ? '␣' : t === '\n' ? '⏎' : t);

export function attentionSpec(sample: AttentionSample): TopLevelSpec {
  // Positions keep labels unique when a token repeats; the label shows the token itself.
  const labels = sample.tokens.map((t, i) => `${String(i).padStart(2, '0')} ${shown(t)}`);
  const values = sample.weights.flatMap((row, q) =>
    row.map((w, k) => ({ query: labels[q] ?? String(q), key: labels[k] ?? String(k), weight: k > q ? null : w })),
  );
  return {
    title: {
      text: `Attention, ${sample.encoding}: last layer, mean over heads`,
      subtitle: sample.text.replace(/\n/g, ' ⏎ ').slice(0, 90),
    },
    data: { values: values.filter((v) => v.weight !== null) },
    width: Math.max(200, 16 * labels.length),
    height: Math.max(200, 16 * labels.length),
    mark: 'rect',
    encoding: {
      x: { field: 'key', type: 'ordinal', sort: labels, title: 'key', axis: { labelAngle: -60 } },
      y: { field: 'query', type: 'ordinal', sort: labels, title: 'query' },
      color: { field: 'weight', type: 'quantitative', scale: { scheme: 'viridis', domain: [0, 1] } },
    },
  } as TopLevelSpec;
}

/** Every plot the report has data for. Plots without data are skipped (the report says so). */
export async function renderPlots(
  report: ComparisonReport,
  jobs: readonly JobRecord[],
  attention: readonly AttentionSample[],
  trained: ReadonlyMap<string, [number, number]> = new Map(),
): Promise<{ plots: PlotFile[]; skipped: string[] }> {
  const plots: PlotFile[] = [];
  const skipped: string[] = [];
  const rows = report.rows;
  const tasks: { name: string; title: string; when: boolean; spec: () => TopLevelSpec; why: string }[] = [
    {
      name: 'accuracy.png',
      title: 'Accuracy comparison with 95% confidence intervals',
      when: rows.length > 0,
      spec: () => accuracySpec(rows),
      why: 'no evaluations',
    },
    {
      name: 'length-generalization.png',
      title: 'Length generalization',
      when: rows.some((r) => Object.keys(r.perLength).length > 0),
      spec: () => lengthGeneralizationSpec(rows, jobs, trained),
      why: 'no per-length results',
    },
    {
      name: 'training-curves.png',
      title: 'Training curves',
      when: jobs.some((j) => j.metrics.length > 0),
      spec: () => trainingSpec(jobs.filter((j) => j.metrics.length > 0)),
      why: 'no metrics.jsonl with points',
    },
    {
      name: 'efficiency.png',
      title: 'Efficiency',
      when: rows.length > 0,
      spec: () => efficiencySpec(rows),
      why: 'no evaluations',
    },
    {
      name: 'error-analysis.png',
      title: 'Error analysis',
      when: rows.some((r) => Object.values(r.errorTaxonomy).some((n) => n > 0) || r.stepErrors.problemsWithSteps > 0),
      spec: () => errorSpec(rows),
      why: 'no errors recorded',
    },
  ];
  for (const t of tasks) {
    if (!t.when) {
      skipped.push(`${t.name}: ${t.why}`);
      continue;
    }
    plots.push({ name: t.name, title: t.title, png: await renderPng(t.spec()) });
  }
  for (const a of attention) {
    plots.push({
      name: `attention-${a.encoding}.png`,
      title: `Attention heatmap: ${a.encoding}`,
      png: await renderPng(attentionSpec(a)),
    });
  }
  return { plots, skipped };
}
