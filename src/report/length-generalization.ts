// Length generalization in the report: the plot (exact match against operand length, one line per encoding, a band
// over seeds, the trained lengths shaded), the longest-length table with the under-trained flag, and the published
// results beside ours on the same axes (train lengths -> the longest length carried, as a multiple of the trained).
import type { TopLevelSpec } from 'vega-lite';
import type { Evaluation, TaskSpec } from '../../protocol/messages.ts';
import type { JobRecord } from '../run-dir/load-run.ts';
import { formatLongestLength, rankRows, UNDER_TRAINED_BELOW, underTrainedNote } from './comparison.ts';
import type { ComparisonSummaryRow } from './comparison.ts';

/** A published length-generalization result on addition, as issue 24 lists them. */
export interface PublishedResult {
  source: string;
  citation: string;
  model: string;
  trainTest: string;
  result: string;
  /** Longest length carried / longest trained length, as the source's numbers give it. */
  extrapolation: string;
}

export const PUBLISHED_RESULTS: readonly PublishedResult[] = [
  {
    source: 'Kazemnejad et al. 2023 (NoPE, T5, ALiBi, RoPE, sinusoidal)',
    citation:
      'The Impact of Positional Encoding on Length Generalization in Transformers, NeurIPS 2023, arXiv:2305.19466',
    model: '~107M decoder, 40k steps',
    trainTest: 'addition 1-8 -> 9-16 digits',
    result: 'every encoding near 0 past 9 digits; NoPE and T5 best overall',
    extrapolation: '1.125x',
  },
  {
    source: 'Lee et al. 2023 (reversed answers)',
    citation: 'Teaching Arithmetic to Small Transformers, ICLR 2024, arXiv:2307.03381',
    model: '10.6M NanoGPT',
    trainTest: '3-digit addition',
    result: 'learns in distribution fast, no extrapolation',
    extrapolation: '1.0x',
  },
  {
    source: 'Shen et al. 2023',
    citation: 'Positional Description Matters for Transformers Arithmetic, arXiv:2311.14737',
    model: '~100M',
    trainTest: '10 -> 12 digits',
    result: 'about 10% past the trained length',
    extrapolation: '1.1x',
  },
  {
    source: 'Zhou et al. 2024 (FIRE, randomized positions, index hints)',
    citation: 'Transformers Can Achieve Length Generalization But Not Robustly, arXiv:2402.09371',
    model: '~25M',
    trainTest: '<= 40 -> 100 digits',
    result: '> 98%, unstable across seeds',
    extrapolation: '2.5x',
  },
  {
    source: 'McLeish et al. 2024 (Abacus)',
    citation: 'Transformers Can Do Arithmetic with the Right Embeddings, NeurIPS 2024, arXiv:2405.17399',
    model: '16 layers, 1 GPU-day',
    trainTest: '20 -> 100 digits',
    result: '99%',
    extrapolation: '5-6x',
  },
  {
    source: 'Cho et al. 2024 (position coupling)',
    citation:
      'Position Coupling: Improving Length Generalization of Arithmetic Transformers Using Task Structure, NeurIPS 2024, arXiv:2405.20671',
    model: '1 layer, 4 heads, d 512',
    trainTest: '1-30 -> 200 digits',
    result: '> 95%',
    extrapolation: '6.7x',
  },
];

/** The operand lengths a task trains on ([minDigits, maxDigits], defaults 1 and 3); null for other tasks. */
export function trainedLengths(task: Pick<TaskSpec, 'name' | 'params'> | undefined): [number, number] | null {
  if (task === undefined || (task.name !== 'addition' && task.name !== 'multiplication')) return null;
  const n = (k: string, fallback: number): number => {
    const v = task.params[k];
    return typeof v === 'number' ? v : fallback;
  };
  return [n('minDigits', 1), n('maxDigits', 3)];
}

/** Per task name: the trained lengths of the experiment's first task of that name. */
export function trainedLengthsByTask(tasks: readonly TaskSpec[]): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const t of tasks) {
    const range = trainedLengths(t);
    if (range !== null && !out.has(t.name)) out.set(t.name, range);
  }
  return out;
}

const TRAINED_LABEL = `>= ${UNDER_TRAINED_BELOW * 100}% in distribution`;
const UNDER_TRAINED_LABEL = `under-trained (< ${UNDER_TRAINED_BELOW * 100}% in distribution)`;

type Row = Pick<
  ComparisonSummaryRow,
  'task' | 'encoding' | 'seeds' | 'exactMatch' | 'longestLength90' | 'underTrainedSeeds' | 'perLength'
>;

/**
 * One line per encoding (mean over seeds), a band from the lowest to the highest seed, the trained lengths shaded,
 * under-trained encodings dashed.
 */
export function lengthGeneralizationSpec(
  rows: readonly Row[],
  jobs: readonly Pick<JobRecord, 'encoding' | 'task' | 'evaluation'>[],
  trained: ReadonlyMap<string, [number, number]>,
): TopLevelSpec {
  const values: Record<string, unknown>[] = [];
  for (const r of rows) {
    const evals = jobs
      .filter((j) => j.encoding === r.encoding && j.task === r.task && j.evaluation !== undefined)
      .map((j) => j.evaluation as Evaluation);
    for (const [len, mean] of Object.entries(r.perLength)) {
      const perSeed = evals.map((e) => e.perLength[len]?.exactMatch).filter((x): x is number => x !== undefined);
      values.push({
        kind: 'line',
        task: r.task,
        encoding: r.encoding,
        status: r.underTrainedSeeds > 0 ? UNDER_TRAINED_LABEL : TRAINED_LABEL,
        length: Number(len),
        mean,
        lo: perSeed.length > 0 ? Math.min(...perSeed) : mean,
        hi: perSeed.length > 0 ? Math.max(...perSeed) : mean,
      });
    }
  }
  for (const task of new Set(rows.map((r) => r.task))) {
    const range = trained.get(task);
    if (range !== undefined) values.push({ kind: 'trained', task, from: range[0] - 0.5, to: range[1] + 0.5 });
  }
  const x = {
    field: 'length',
    type: 'quantitative',
    title: 'operand length (digits)',
    axis: { tickMinStep: 1 },
    scale: { zero: false, nice: false },
  };
  return {
    title: {
      text: 'Length generalization: exact match against operand length',
      subtitle: 'line: mean over seeds; band: lowest to highest seed; shaded: the trained lengths',
    },
    data: { values },
    facet: { column: { field: 'task', type: 'nominal' } },
    spec: {
      width: 420,
      height: 260,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'trained'" }],
          mark: { type: 'rect', color: '#999', opacity: 0.15 },
          encoding: {
            x: { field: 'from', type: 'quantitative', scale: { zero: false, nice: false } },
            x2: { field: 'to' },
            y: { datum: 0, type: 'quantitative' },
            y2: { datum: 1 },
          },
        },
        {
          transform: [{ filter: "datum.kind === 'line'" }],
          mark: { type: 'errorband', opacity: 0.18 },
          encoding: {
            x,
            y: { field: 'lo', type: 'quantitative', title: 'exact match' },
            y2: { field: 'hi' },
            color: { field: 'encoding', type: 'nominal', sort: null },
          },
        },
        {
          transform: [{ filter: "datum.kind === 'line'" }],
          mark: { type: 'line', point: true },
          encoding: {
            x,
            y: { field: 'mean', type: 'quantitative', title: 'exact match', scale: { domain: [0, 1] } },
            color: { field: 'encoding', type: 'nominal', sort: null },
            strokeDash: {
              field: 'status',
              type: 'nominal',
              title: null,
              scale: { domain: [TRAINED_LABEL, UNDER_TRAINED_LABEL] },
              legend: { labelLimit: 400 },
            },
          },
        },
      ],
    },
  } as TopLevelSpec;
}

export interface Table {
  head: string[];
  rows: string[][];
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '–');

/** "1.6x" for the longest length carried over the longest trained, per the lowest and highest seed. */
export function extrapolationFactor(perSeed: readonly (number | null)[], trainedMax: number | undefined): string {
  if (trainedMax === undefined || perSeed.length === 0) return '–';
  const values = perSeed.map((x) => (x ?? 0) / trainedMax);
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const show = (v: number): string => `${v.toFixed(2)}x`;
  return lo === hi ? show(lo) : `${show(lo)}-${show(hi)}`;
}

/** Per encoding and task: in-distribution exact match, the longest length with >= 90%, and the under-trained flag. */
export function longestLengthTable(rows: readonly Row[], trained: ReadonlyMap<string, [number, number]>): Table {
  return {
    head: [
      'task',
      'encoding',
      'seeds',
      'trained lengths',
      'exact match in distribution',
      'longest length >= 90% (per seed: lowest-highest)',
      'x trained',
      'status',
    ],
    rows: rankRows(rows).map((r) => {
      const range = trained.get(r.task);
      return [
        r.task,
        r.encoding,
        String(r.seeds),
        range === undefined ? '–' : `${range[0]}-${range[1]}`,
        pct(r.exactMatch),
        formatLongestLength(r.longestLength90),
        extrapolationFactor(r.longestLength90, range?.[1]),
        underTrainedNote(r) || 'ranked',
      ];
    }),
  };
}

/** The published results and ours, on the same axes (train -> test lengths, result, extrapolation). */
export function publishedBesideOurs(
  rows: readonly Row[],
  trained: ReadonlyMap<string, [number, number]>,
  model: string,
): Table {
  const ours = rankRows(rows).map((r) => {
    const range = trained.get(r.task);
    const tested = Object.keys(r.perLength).map(Number);
    const span = tested.length > 0 ? `${Math.min(...tested)}-${Math.max(...tested)}` : '–';
    return [
      `this run: ${r.encoding}`,
      model,
      `${r.task} ${range === undefined ? '?' : `${range[0]}-${range[1]}`} -> ${span} digits`,
      `${pct(r.exactMatch)} in distribution; >= 90% up to ${formatLongestLength(r.longestLength90)} digits` +
        (r.underTrainedSeeds > 0 ? ` (${underTrainedNote(r)})` : ''),
      extrapolationFactor(r.longestLength90, range?.[1]),
      '',
    ];
  });
  return {
    head: ['source', 'model', 'train -> test', 'result', 'extrapolation', 'citation'],
    rows: [
      ...PUBLISHED_RESULTS.map((p) => [p.source, p.model, p.trainTest, p.result, p.extrapolation, p.citation]),
      ...ours,
    ],
  };
}

/** Findings in words: which models are under-trained, and how far the trained ones carry. */
export function lengthFindings(rows: readonly Row[], trained: ReadonlyMap<string, [number, number]>): string[] {
  const out: string[] = [];
  for (const task of new Set(rows.map((r) => r.task))) {
    const taskRows = rows.filter((r) => r.task === task);
    const under = taskRows.filter((r) => r.underTrainedSeeds > 0);
    if (under.length > 0)
      out.push(
        `On ${task}, ${under.map((r) => `${r.encoding} (${r.underTrainedSeeds}/${r.seeds} seeds)`).join(', ')} ${under.length > 1 ? 'are' : 'is'} under-trained: below ${pct(UNDER_TRAINED_BELOW)} exact match in distribution, so ${under.length > 1 ? 'their' : 'its'} length figures are not ranked.`,
      );
    const range = trained.get(task);
    const ranked = taskRows
      .filter((r) => r.underTrainedSeeds === 0 && r.longestLength90.length > 0)
      .map((r) => ({ r, worst: Math.min(...r.longestLength90.map((x) => x ?? 0)) }))
      .sort((a, b) => b.worst - a.worst);
    const best = ranked[0];
    if (best !== undefined && best.worst > 0 && range !== undefined && Object.keys(best.r.perLength).length > 1)
      out.push(
        `On ${task}, trained on ${range[0]}-${range[1]} digits, ${best.r.encoding} carries furthest: >= 90% exact match up to ${best.worst} digits on every seed (${(best.worst / range[1]).toFixed(2)}x the longest trained length)` +
          (ranked.length > 1
            ? `; the others: ${ranked
                .slice(1)
                .map((x) => `${x.r.encoding} ${formatLongestLength(x.r.longestLength90)}`)
                .join(', ')}.`
            : '.'),
      );
  }
  return out;
}
