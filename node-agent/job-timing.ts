// Times one job's training through the agent's worker thread, and the same job driven directly in this thread,
// so benchmarks can state the agent's overhead (tokens/s under an agent vs bare). Wall clock from the first to the
// last trained step; model building and evaluation are left out of both.
import type { JobSpec } from '../protocol/messages.ts';
import type { BackendName } from '../src/train/workload.ts';
import { withDeadline } from '../protocol/deadline.ts';
import { createWorkerRunner } from './job-runner.ts';
import { loadCreateWorkload } from './training-loop.ts';

export interface JobTiming {
  steps: number;
  wallS: number;
  stepsPerS: number;
  /** Mean of the workload's own tokens/s over the timed steps. */
  tokensPerSecond: number;
}

function summarize(points: { step: number; tokensPerSecond: number }[], wallMs: number): JobTiming {
  const steps = points.length;
  const mean = steps === 0 ? 0 : points.reduce((s, p) => s + p.tokensPerSecond, 0) / steps;
  return { steps, wallS: wallMs / 1000, stepsPerS: wallMs > 0 ? (steps * 1000) / wallMs : 0, tokensPerSecond: mean };
}

/** Train spec.training.steps in a worker, timing steps after the first `warmupSteps`. Bounded by timeoutMs. */
export async function timeJobInWorker(
  spec: JobSpec,
  options: {
    workloadModule: string;
    backend?: BackendName;
    sliceSteps?: number;
    warmupSteps?: number;
    timeoutMs?: number;
  },
): Promise<JobTiming> {
  const warmup = options.warmupSteps ?? 5;
  const points: { step: number; tokensPerSecond: number }[] = [];
  let t0 = 0;
  let t1 = 0;
  const noCheckpoints = { ...spec, checkpointEvery: spec.training.steps + 1 };
  const timeoutMs = options.timeoutMs ?? 600_000;
  let handle: ReturnType<ReturnType<typeof createWorkerRunner>['start']> | undefined;
  const finished = new Promise<void>((resolve, reject) => {
    handle = createWorkerRunner().start(
      {
        workloadModule: options.workloadModule,
        spec: noCheckpoints,
        sliceSteps: options.sliceSteps ?? 10,
        ...(options.backend === undefined ? {} : { backend: options.backend }),
      },
      {
        onEvent: (e) => {
          if (e.type === 'metrics') {
            for (const p of e.points) {
              if (p.step === warmup) t0 = performance.now();
              if (p.step > warmup) points.push(p);
            }
            t1 = performance.now();
          } else if (e.type === 'final') resolve();
          else if (e.type === 'failed') reject(new Error(e.error.message));
        },
        onExit: (error) => (error === undefined ? resolve() : reject(error)),
      },
    );
  });
  try {
    await withDeadline(finished, timeoutMs, () => new Error(`job did not finish within ${timeoutMs} ms`));
  } finally {
    await handle?.terminate();
  }
  return summarize(points, t1 - t0);
}

/** The same steps with the workload driven directly in this thread (what `pe-arena train` does). */
export async function timeJobDirect(
  spec: JobSpec,
  options: { workloadModule: string; backend?: BackendName; sliceSteps?: number; warmupSteps?: number },
): Promise<JobTiming> {
  const warmup = options.warmupSteps ?? 5;
  const create = await loadCreateWorkload(options.workloadModule);
  const w = await create(spec, options.backend === undefined ? {} : { backend: options.backend });
  try {
    await w.trainSteps(warmup);
    const t0 = performance.now();
    const points: { step: number; tokensPerSecond: number }[] = [];
    while (w.step < spec.training.steps) points.push(...(await w.trainSteps(options.sliceSteps ?? 10)));
    return summarize(points, performance.now() - t0);
  } finally {
    w.dispose();
  }
}
