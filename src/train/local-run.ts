// Single-process training for `pe-arena train`: runs one job to the end, writing under `out`:
//   job.json  metrics.jsonl  checkpoints/step-<n>.ckpt  final_model/model.ckpt  evaluation.json
// Files are written atomically (temp file, then rename), so an interrupted run never leaves half a checkpoint.
import { appendFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Evaluation, JobSpec, MetricPoint } from '../../protocol/messages.ts';
import { createTfWorkload } from './tf-workload.ts';
import type { BackendName } from './workload.ts';

export interface LocalRunOptions {
  out: string;
  backend?: BackendName;
  resumeFrom?: Uint8Array;
  /** Write a checkpoint every this many steps (0: only the final model). */
  checkpointEvery: number;
  log: (line: string) => void;
  onStep?: (point: MetricPoint, total: number) => void;
  onEvaluate?: (done: number, total: number) => void;
  /** Checked between steps: when true, the run writes a checkpoint and returns early. */
  shouldStop?: () => boolean;
}

export interface LocalRunResult {
  evaluation: Evaluation | null;
  stoppedAt: number;
  checkpoints: string[];
  finalModel: string | null;
}

export async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(7, '0')}.ckpt`;
}

export async function runLocalTraining(spec: JobSpec, options: LocalRunOptions): Promise<LocalRunResult> {
  const { out, log } = options;
  const ckptDir = join(out, 'checkpoints');
  await mkdir(ckptDir, { recursive: true });
  await writeAtomic(join(out, 'job.json'), JSON.stringify(spec, null, 2) + '\n');
  const workload = await createTfWorkload(spec, {
    ...(options.backend === undefined ? {} : { backend: options.backend }),
    ...(options.resumeFrom === undefined ? {} : { resumeFrom: options.resumeFrom }),
    log,
  });
  const checkpoints: string[] = [];
  const metricsFile = join(out, 'metrics.jsonl');
  let pending: string[] = [];
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    await appendFile(metricsFile, text);
  };
  const saveCheckpoint = async (): Promise<void> => {
    const file = join(ckptDir, checkpointName(workload.step));
    await writeAtomic(file, await workload.checkpoint());
    checkpoints.push(file);
    log(`checkpoint ${file}`);
  };
  try {
    const total = spec.training.steps;
    const every = options.checkpointEvery;
    while (workload.step < total) {
      if (options.shouldStop?.() === true) {
        await flush();
        await saveCheckpoint();
        return { evaluation: null, stoppedAt: workload.step, checkpoints, finalModel: null };
      }
      const [point] = await workload.trainSteps(1);
      if (point === undefined) break;
      pending.push(JSON.stringify(point) + '\n');
      options.onStep?.(point, total);
      // Flush metrics in blocks: one small write per 50 steps, not one per step.
      if (pending.length >= 50) await flush();
      if (every > 0 && workload.step % every === 0 && workload.step < total) {
        await flush();
        await saveCheckpoint();
      }
    }
    await flush();
    await mkdir(join(out, 'final_model'), { recursive: true });
    const finalModel = join(out, 'final_model', 'model.ckpt');
    await writeAtomic(finalModel, await workload.exportModel());
    log(`final model ${finalModel}`);
    const evaluation = await workload.evaluate(
      options.onEvaluate === undefined ? {} : { onProgress: options.onEvaluate },
    );
    await writeAtomic(join(out, 'evaluation.json'), JSON.stringify(evaluation, null, 2) + '\n');
    return { evaluation, stoppedAt: workload.step, checkpoints, finalModel };
  } finally {
    await flush().catch(() => undefined);
    workload.dispose();
  }
}
