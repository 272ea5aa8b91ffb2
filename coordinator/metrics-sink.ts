// Where results land: batched metrics to jobs/<jobId>/metrics.jsonl (and the same scalars as TensorBoard event
// files under tensorboard/<jobId>/), evaluations to evaluation.json, and at the end
// final_comparison/comparison_report.json plus the comparison table.
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Evaluation, JobId, MetricPoint } from '../protocol/messages.ts';
import { systemClock } from '../protocol/clock.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { buildComparisonSummary } from '../src/report/comparison.ts';
import type { ComparisonSummary } from '../src/report/comparison.ts';
import { atomicWrite } from './checkpoint-store.ts';
import type { Experiment } from './experiment.ts';
import { TensorBoardSink } from './tensorboard/sink.ts';

export class MetricsSink {
  private readonly streams = new Map<JobId, WriteStream>();
  /** Lines waiting per job: written once a second (or at 64 KiB), not once per message, to spare syscalls. */
  private readonly buffered = new Map<JobId, string>();
  private readonly flusher: TimerHandle;
  private readonly tensorboard: TensorBoardSink;
  /** The first TensorBoard write that failed (a full disk, say): metrics.jsonl goes on, the event files stop. */
  tensorboardError: Error | undefined;

  constructor(
    private readonly runDir: string,
    private readonly clock: Clock = systemClock,
  ) {
    this.tensorboard = new TensorBoardSink(runDir, () => clock.now());
    this.flusher = clock.setInterval(() => this.flush(), 1000);
    // A real timer must not keep the process alive on its own (close() clears it in any case).
    (this.flusher as { unref?: () => void }).unref?.();
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
    this.toTensorBoard((tb) => tb.writeMetrics(jobId, points));
  }

  flush(): void {
    for (const [jobId, text] of this.buffered) this.stream(jobId).write(text);
    this.buffered.clear();
    this.toTensorBoard((tb) => tb.flush());
  }

  private toTensorBoard(write: (tb: TensorBoardSink) => void): void {
    if (this.tensorboardError !== undefined) return;
    try {
      write(this.tensorboard);
    } catch (error) {
      this.tensorboardError = error instanceof Error ? error : new Error(String(error));
    }
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
    this.toTensorBoard((tb) => tb.writeEvaluation(jobId, evaluation));
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
    this.clock.clearInterval(this.flusher);
    this.flush();
    this.toTensorBoard((tb) => tb.close());
    const all = [...this.streams.values()];
    this.streams.clear();
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.end(resolve))));
  }

  /** Aggregate every evaluation (mean over seeds), write final_comparison/comparison_report.json, return it. */
  writeComparison(experiment: Experiment): ComparisonSummary {
    const evaluations: Evaluation[] = [];
    for (const job of experiment.jobs) {
      const e = this.readEvaluation(job.jobId);
      if (e) evaluations.push(e);
    }
    const report = buildComparisonSummary(experiment, evaluations);
    atomicWrite(
      join(this.runDir, 'final_comparison', 'comparison_report.json'),
      Buffer.from(JSON.stringify(report, null, 2) + '\n'),
    );
    return report;
  }
}
