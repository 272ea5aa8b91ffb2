// report.html (one self-contained file, plots embedded as data URIs) and summary.md, from the aggregated
// numbers. Every value is escaped: job ids, task names and predictions come from files on disk.
import type { ComparisonReport, ComparisonRow, StatisticalAnalysis } from './aggregate.ts';
import type { RunData } from '../run-dir/load-run.ts';
import type { PlotFile } from './plots.ts';
import type { Interval } from './stats.ts';
import { underTrainedNote } from './comparison.ts';
import { longestLengthTable, publishedBesideOurs, trainedLengthsByTask, type Table } from './length-generalization.ts';

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

const pct = (x: number | undefined): string =>
  x !== undefined && Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '–';
const ci = (i: Interval | null): string =>
  i === null || !Number.isFinite(i.mean) ? '–' : `${pct(i.mean)} [${pct(i.lo)}, ${pct(i.hi)}]`;
const num = (x: number | null | undefined, digits = 0): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
const pval = (p: number): string => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));

function accuracyTable(rows: readonly ComparisonRow[]): Table {
  return {
    head: [
      'task',
      'encoding',
      'seeds',
      'exact match [95% CI]',
      'symbolic [95% CI]',
      'reasoning steps [95% CI]',
      'attention entropy (nats)',
      'status',
    ],
    rows: rows.map((r) => [
      r.task,
      r.encoding,
      String(r.seeds),
      ci(r.ci.exactMatch),
      ci(r.ci.symbolicAccuracy),
      ci(r.ci.stepAccuracy),
      r.ci.attentionEntropy.n === 0
        ? '–'
        : `${num(r.ci.attentionEntropy.mean, 3)} [${num(r.ci.attentionEntropy.lo, 3)}, ${num(r.ci.attentionEntropy.hi, 3)}]`,
      underTrainedNote(r),
    ]),
  };
}

function lengthTable(rows: readonly ComparisonRow[]): Table {
  const lengths = [...new Set(rows.flatMap((r) => Object.keys(r.perLength)))].sort((a, b) => Number(a) - Number(b));
  return {
    head: ['task', 'encoding', ...lengths.map((l) => `len ${l}`)],
    rows: rows.map((r) => [r.task, r.encoding, ...lengths.map((l) => pct(r.perLength[l]))]),
  };
}

function digitTable(rows: readonly ComparisonRow[]): Table {
  const lengths = [...new Set(rows.flatMap((r) => Object.keys(r.digitAccuracyPerLength)))].sort(
    (a, b) => Number(a) - Number(b),
  );
  return {
    head: ['task', 'encoding', ...lengths.map((l) => `len ${l}`)],
    rows: rows
      .filter((r) => Object.keys(r.digitAccuracyPerLength).length > 0)
      .map((r) => [r.task, r.encoding, ...lengths.map((l) => pct(r.digitAccuracyPerLength[l]))]),
  };
}

/** The model in the published table's terms. */
function modelWords(run: RunData): string {
  const m = run.experiment.model;
  const steps = run.experiment.training?.steps;
  if (m === undefined) return `preset ${run.experiment.preset}`;
  return `${m.layers} layer(s), ${m.heads} heads, d ${m.dModel}${steps === undefined ? '' : `, ${steps} steps`}`;
}

function lengthTables(run: RunData, report: ComparisonReport): { longest: Table; published: Table } {
  const trained = trainedLengthsByTask(run.experiment.tasks);
  return {
    longest: longestLengthTable(report.rows, trained),
    published: publishedBesideOurs(report.rows, trained, modelWords(run)),
  };
}

function efficiencyTable(report: ComparisonReport): Table {
  return {
    head: [
      'task',
      'encoding',
      'parameters',
      'tokens/s',
      'wall time (s)',
      'steps',
      `steps to accuracy ${report.options.targetAccuracy}`,
      `steps to loss ${report.options.targetLoss}`,
      'backend',
    ],
    rows: report.rows.map((r) => {
      const e = r.efficiency;
      return [
        r.task,
        r.encoding,
        num(e.parameters),
        num(e.tokensPerSecond),
        num(e.wallTimeS, 1),
        num(e.steps),
        e.stepsToTargetAccuracy === null ? 'not reached / not logged' : num(e.stepsToTargetAccuracy),
        e.stepsToTargetLoss === null ? 'not reached' : num(e.stepsToTargetLoss),
        r.backends.join(', '),
      ];
    }),
  };
}

function pairwiseTable(analysis: StatisticalAnalysis): Table {
  return {
    head: [
      'task',
      'A',
      'B',
      'paired problems',
      'A only right',
      'B only right',
      'acc A',
      'acc B',
      'p',
      'p (Holm)',
      'significant',
    ],
    rows: analysis.pairwise.map((t) => [
      t.task,
      t.a,
      t.b,
      String(t.n),
      String(t.aOnly),
      String(t.bOnly),
      pct(t.accuracyA),
      pct(t.accuracyB),
      pval(t.p),
      pval(t.pHolm),
      t.significant ? 'yes' : 'no',
    ]),
  };
}

function mrrTable(analysis: StatisticalAnalysis): Table {
  return {
    head: ['encoding', 'MRR', 'ranks'],
    rows: analysis.meanReciprocalRank.map((m) => [
      m.encoding,
      m.mrr.toFixed(3),
      Object.entries(m.ranks)
        .map(([t, r]) => `${t}: ${r}`)
        .join(', '),
    ]),
  };
}

function seedTable(analysis: StatisticalAnalysis): Table {
  return {
    head: ['task', 'encoding', 'per seed (exact match)', 'mean', 'std', 'range'],
    rows: analysis.seedDifferences.map((s) => [
      s.task,
      s.encoding,
      s.perSeed.map((p) => `${p.seed}: ${pct(p.exactMatch)}`).join(', '),
      pct(s.mean),
      pct(s.std),
      pct(s.range),
    ]),
  };
}

function htmlTable(t: Table): string {
  if (t.rows.length === 0) return '<p class="none">No data.</p>';
  return `<table><thead><tr>${t.head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${t.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function mdTable(t: Table): string {
  if (t.rows.length === 0) return '_No data._';
  const cell = (c: string): string => c.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${t.head.map(cell).join(' | ')} |`,
    `|${t.head.map(() => '---').join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

function methodLines(run: RunData, report: ComparisonReport): [string, string][] {
  const e = run.experiment;
  const m = e.model;
  const tr = e.training;
  const ev = e.evaluation;
  return [
    ['experiment', `${e.name}${e.description ? ` — ${e.description}` : ''} (run ${run.runId})`],
    ['encodings', e.encodings.join(', ') || '–'],
    [
      'tasks',
      e.tasks.length > 0
        ? e.tasks.map((t) => `${t.name} ${JSON.stringify(t.params)}`).join('; ')
        : [...new Set(run.jobs.map((j) => j.task))].join(', '),
    ],
    ['seeds', e.seeds.join(', ') || '–'],
    [
      'model',
      m
        ? `preset ${e.preset}: ${m.layers} layers, d_model ${m.dModel}, ${m.heads} heads, FFN ${m.ffnDim}, dropout ${m.dropout}, max length ${m.maxLen}${m.attentionLogitCap ? `, attention logits capped at ${m.attentionLogitCap}` : ''}${m.sinusoidalStride !== undefined && m.sinusoidalStride !== 1 ? `, sinusoidal stride ${m.sinusoidalStride}` : ''}${mapeOptions(run.jobs.find((j) => j.encoding === 'mape')?.spec?.model ?? m)}`
        : `preset ${e.preset}`,
    ],
    [
      'training',
      tr
        ? `${tr.steps} steps, batch ${tr.batchSize}, learning rate ${tr.learningRate} (warm-up ${tr.warmupSteps}), weight decay ${tr.weightDecay}, clip ${tr.clipNorm}`
        : '–',
    ],
    [
      'evaluation data',
      ev
        ? `${ev.samples} held-out problems per job${ev.lengthTask ? `; length split: ${ev.lengthTask.name} ${JSON.stringify(ev.lengthTask.params)} × ${ev.lengthSamples ?? ev.samples}` : ''}${ev.lengthRange ? `; length split: ${ev.perLength ?? '?'} held-out problems per operand length ${ev.lengthRange[0]}-${ev.lengthRange[1]}, the task's own format` : ''}; greedy decoding`
        : 'greedy decoding',
    ],
    ['jobs', `${report.jobs.evaluated} of ${report.jobs.total} evaluated${reusedNote(report.jobs.reused)}`],
    [
      'environment',
      `backends: ${report.environment.backends.join(', ') || '–'}; report built on ${report.environment.reportHost.platform}/${report.environment.reportHost.arch}, Node ${report.environment.reportHost.node}`,
    ],
  ];
}

/** The MAPE jobs' own options (defaults included; they apply to MAPE jobs only), e.g. "; MAPE: mapeRelative true". */
function mapeOptions(m: object): string {
  const set = Object.entries(m).filter(([key]) => key.startsWith('mape'));
  return set.length === 0 ? '' : `; MAPE: ${set.map(([k, v]) => `${k} ${String(v)}`).join(', ')}`;
}

/** ", 18 taken over from run <id> (the same job, `pe-arena run --reuse`)", per run they came from. */
function reusedNote(reused: readonly { jobId: string; fromRun: string }[] | undefined): string {
  if (reused === undefined || reused.length === 0) return '';
  const byRun = new Map<string, number>();
  for (const r of reused) byRun.set(r.fromRun, (byRun.get(r.fromRun) ?? 0) + 1);
  const parts = [...byRun].map(([run, n]) => `${n} taken over from run ${run}`);
  return `, ${parts.join(', ')} (the same job spec, \`pe-arena run --reuse\`)`;
}

function missingLines(report: ComparisonReport): string[] {
  const failed = new Map(report.jobs.failed.map((f) => [f.jobId, f.reason]));
  return report.jobs.missing.map((id) => `${id}: ${failed.get(id) ?? 'no evaluation.json (not finished or lost)'}`);
}

export function renderHtml(
  run: RunData,
  report: ComparisonReport,
  analysis: StatisticalAnalysis,
  plots: readonly PlotFile[],
  skipped: readonly string[],
): string {
  const section = (title: string, body: string): string => `<section><h2>${escapeHtml(title)}</h2>${body}</section>`;
  const missing = missingLines(report);
  const lengths = lengthTables(run, report);
  const img = (p: PlotFile): string =>
    `<figure><img alt="${escapeHtml(p.title)}" src="data:image/png;base64,${Buffer.from(p.png).toString('base64')}"><figcaption>${escapeHtml(p.title)}</figcaption></figure>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pe-arena report: ${escapeHtml(run.experiment.name)}</title>
<style>
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;white-space:nowrap} th{background:#f5f5f5}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em} dt{font-weight:600}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{color:#555;font-size:.9em}
.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:.5em 1em} .none{color:#777}
@media print{figure{break-inside:avoid}}
</style></head><body>
<h1>pe-arena report: ${escapeHtml(run.experiment.name)}</h1>
<p>Generated ${escapeHtml(report.generatedAt)} from <code>${escapeHtml(run.runDir)}</code>.</p>
${missing.length > 0 ? `<div class="warn" id="missing"><strong>Incomplete run:</strong> ${missing.length} of ${report.jobs.total} job(s) have no evaluation.<ul>${missing.map((m) => `<li>${escapeHtml(m)}</li>`).join('')}</ul></div>` : ''}
${section('Findings', analysis.findings.length > 0 ? `<ul id="findings">${analysis.findings.map((f) => `<li>${escapeHtml(f)}</li>`).join('')}</ul>` : '<p class="none">No findings.</p>')}
${section(
  'Method',
  `<dl>${methodLines(run, report)
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`)
    .join('')}</dl><p>${escapeHtml(analysis.method)}</p>`,
)}
${section('Accuracy', htmlTable(accuracyTable(report.rows)))}
${section('Accuracy per problem length (exact match)', htmlTable(lengthTable(report.rows)))}
${section('Digit accuracy per problem length', htmlTable(digitTable(report.rows)))}
${section('Length generalization: the longest length with >= 90% exact match', htmlTable(lengths.longest))}
${section('Published results beside ours', htmlTable(lengths.published))}
${section('Efficiency', htmlTable(efficiencyTable(report)))}
${section('Pairwise tests (exact McNemar, Holm-corrected)', htmlTable(pairwiseTable(analysis)))}
${section('Mean reciprocal rank across tasks', htmlTable(mrrTable(analysis)))}
${section('Differences between seeds', htmlTable(seedTable(analysis)))}
${section('Plots', plots.map(img).join('\n') + (skipped.length > 0 ? `<p class="none">Not drawn: ${skipped.map(escapeHtml).join('; ')}</p>` : ''))}
${run.warnings.length > 0 ? section('Warnings', `<ul>${run.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>`) : ''}
</body></html>
`;
}

export function renderMarkdown(
  run: RunData,
  report: ComparisonReport,
  analysis: StatisticalAnalysis,
  plots: readonly PlotFile[],
): string {
  const missing = missingLines(report);
  const lengths = lengthTables(run, report);
  const parts = [
    `# pe-arena report: ${run.experiment.name}`,
    `Run \`${run.runId}\`, generated ${report.generatedAt}. Full report with plots: report.html.`,
    ...(missing.length > 0
      ? [
          `**Incomplete run:** ${missing.length} of ${report.jobs.total} job(s) have no evaluation:\n${missing.map((m) => `- ${m}`).join('\n')}`,
        ]
      : []),
    '## Findings',
    analysis.findings.map((f) => `- ${f}`).join('\n') || '_None._',
    '## Method',
    methodLines(run, report)
      .map(([k, v]) => `- **${k}**: ${v}`)
      .join('\n'),
    '## Accuracy',
    mdTable(accuracyTable(report.rows)),
    '## Accuracy per problem length',
    mdTable(lengthTable(report.rows)),
    '## Digit accuracy per problem length',
    mdTable(digitTable(report.rows)),
    '## Length generalization: the longest length with >= 90% exact match',
    mdTable(lengths.longest),
    '## Published results beside ours',
    mdTable(lengths.published),
    '## Efficiency',
    mdTable(efficiencyTable(report)),
    '## Pairwise tests (exact McNemar, Holm-corrected)',
    mdTable(pairwiseTable(analysis)),
    '## Mean reciprocal rank',
    mdTable(mrrTable(analysis)),
    '## Plots',
    plots.map((p) => `- ${p.title}: plots/${p.name}`).join('\n') || '_None._',
  ];
  return parts.join('\n\n') + '\n';
}
