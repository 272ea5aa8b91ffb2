// MetricPoint[] <-> the columnar batch that a `metrics` message carries (see Metrics in messages.ts).
// Producers and consumers keep working with points; only the wire sees columns.
import { METRIC_COLUMNS } from './messages.ts';
import type { JobId, MetricColumn, MetricPoint, Metrics } from './messages.ts';

const WIDTH = METRIC_COLUMNS.length;
const ACCURACY = METRIC_COLUMNS.indexOf('accuracy');

/** How many points a batch holds. */
export function metricCount(m: Pick<Metrics, 'columns'>): number {
  return m.columns.length / WIDTH;
}

/** One column as a view (no copy): metricColumn(m, 'step')[i] is point i's step. */
export function metricColumn(m: Pick<Metrics, 'columns'>, name: MetricColumn): Float64Array {
  const n = metricCount(m);
  const c = METRIC_COLUMNS.indexOf(name);
  return m.columns.subarray(c * n, (c + 1) * n);
}

export function metricsMessage(jobId: JobId, epoch: number, points: readonly MetricPoint[]): Metrics {
  const n = points.length;
  const columns = new Float64Array(n * WIDTH);
  for (let c = 0; c < WIDTH; c++) {
    const name = METRIC_COLUMNS[c]!;
    for (let i = 0; i < n; i++) columns[c * n + i] = points[i]![name] ?? Number.NaN;
  }
  return { type: 'metrics', jobId, epoch, columns };
}

export function metricPoints(m: Pick<Metrics, 'columns'>): MetricPoint[] {
  const { columns } = m;
  const n = metricCount(m);
  const points: MetricPoint[] = [];
  for (let i = 0; i < n; i++) {
    const point: MetricPoint = {
      step: columns[i]!,
      loss: columns[n + i]!,
      learningRate: columns[2 * n + i]!,
      gradNorm: columns[3 * n + i]!,
      tokensPerSecond: columns[4 * n + i]!,
      time: columns[5 * n + i]!,
    };
    const accuracy = columns[ACCURACY * n + i]!;
    if (!Number.isNaN(accuracy)) point.accuracy = accuracy;
    points.push(point);
  }
  return points;
}
