// The training loop the worker runs: load the workload module, train in small slices, post metrics,
// checkpoint every checkpointEvery steps and on request, then export the final model and evaluate.
// It talks through a WorkerChannel, so the same loop runs in a worker thread or (for tests) in process.
import type { CreateWorkload, Workload, WorkloadOptions } from '../src/train/workload.ts';
import { toWireError } from '../protocol/errors.ts';
import type { FromWorker, ToWorker, WorkerStart } from './worker-protocol.ts';
import { WorkloadModuleError } from './errors.ts';

export interface WorkerChannel {
  post(message: FromWorker, transfer?: ArrayBuffer[]): void;
  onMessage(handler: (message: ToWorker) => void): void;
}

const SLICE_TARGET_MS = 250;

/** Let queued messages (checkpoint requests, stop) in before the next slice; trainSteps may never yield. */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function loadCreateWorkload(moduleUrl: string): Promise<CreateWorkload> {
  let mod: unknown;
  try {
    mod = await import(moduleUrl);
  } catch (error) {
    throw new WorkloadModuleError(`cannot load workload module ${moduleUrl}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const create = (mod as { createWorkload?: unknown }).createWorkload;
  if (typeof create !== 'function')
    throw new WorkloadModuleError(`workload module ${moduleUrl} does not export a createWorkload function`);
  return create as CreateWorkload;
}

/** Hand a blob's buffer over instead of copying it, when the blob owns its whole buffer. */
export function transferable(data: Uint8Array): ArrayBuffer[] {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer
    ? [data.buffer]
    : [];
}

/** The job's workload from its module, on the start's backend and resume point, with any further options. */
export async function openWorkload(start: WorkerStart, options: WorkloadOptions): Promise<Workload> {
  const createWorkload = await loadCreateWorkload(start.workloadModule);
  return createWorkload(start.spec, {
    ...(start.backend === undefined ? {} : { backend: start.backend }),
    ...(start.resumeFrom === undefined ? {} : { resumeFrom: start.resumeFrom }),
    ...options,
  });
}

/** The workload's checkpoint to the agent thread (handed over, not copied). */
export async function postCheckpoint(
  w: Workload,
  channel: WorkerChannel,
  reason: 'periodic' | 'requested',
  requestId?: number,
): Promise<void> {
  const data = await w.checkpoint();
  channel.post(
    { type: 'checkpoint', reason, ...(requestId === undefined ? {} : { requestId }), step: w.step, data },
    transferable(data),
  );
}

/** The end of a job: the final model goes up first (its upload overlaps evaluating), then the evaluation. */
export async function exportAndEvaluate(w: Workload, channel: WorkerChannel, stopping: () => boolean): Promise<void> {
  const model = await w.exportModel();
  channel.post({ type: 'final', step: w.step, data: model }, transferable(model));
  await yieldToEventLoop();
  if (stopping()) {
    channel.post({ type: 'stopped', step: w.step });
    return;
  }
  const evaluation = await w.evaluate();
  channel.post({ type: 'evaluation', evaluation });
}

export async function runTraining(start: WorkerStart, channel: WorkerChannel): Promise<void> {
  const requests: { requestId: number; stop: boolean }[] = [];
  let stopping = false;
  channel.onMessage((message) => {
    if (message.type === 'stop') stopping = true;
    else if (message.type === 'checkpoint')
      requests.push({ requestId: message.requestId, stop: message.stop === true });
  });
  const log = (line: string): void => channel.post({ type: 'log', line });

  let workload: Workload | undefined;
  try {
    workload = await openWorkload(start, { log });
    const w = workload;
    channel.post({ type: 'started', backend: w.backend, step: w.step, parameterCount: w.parameterCount });

    const total = start.spec.training.steps;
    const every = start.spec.checkpointEvery > 0 ? start.spec.checkpointEvery : Infinity;
    const maxSlice = Math.max(1, Math.floor(start.sliceSteps));
    // Slices aim at ~SLICE_TARGET_MS, so a slow model (seconds per step) still answers checkpoint requests and
    // stops promptly, while a fast one keeps the per-slice overhead negligible.
    let slice = 1;
    const sendCheckpoint = (reason: 'periodic' | 'requested', requestId?: number): Promise<void> =>
      postCheckpoint(w, channel, reason, requestId);
    const serveRequests = async (): Promise<void> => {
      for (let r = requests.shift(); r !== undefined; r = requests.shift()) {
        await sendCheckpoint('requested', r.requestId);
        if (r.stop) stopping = true;
      }
    };

    await yieldToEventLoop();
    while (!stopping && w.step < total) {
      await serveRequests();
      if (stopping) break;
      const before = w.step;
      // End slices on checkpoint boundaries so periodic checkpoints land exactly on multiples of checkpointEvery.
      const toBoundary = every === Infinity ? slice : every - (before % every);
      const n = Math.min(slice, total - before, toBoundary);
      const t0 = performance.now();
      const points = await w.trainSteps(n);
      const perStep = (performance.now() - t0) / n;
      slice = Math.max(1, Math.min(maxSlice, Math.floor(SLICE_TARGET_MS / Math.max(perStep, 1e-3))));
      if (points.length > 0) channel.post({ type: 'metrics', points });
      if (w.step <= before) throw new Error(`workload made no progress: trainSteps(${n}) left the step at ${w.step}`);
      if (w.step < total && Math.floor(w.step / every) > Math.floor(before / every)) await sendCheckpoint('periodic');
      await yieldToEventLoop();
    }
    await serveRequests();
    if (stopping) {
      channel.post({ type: 'stopped', step: w.step });
      return;
    }
    await exportAndEvaluate(w, channel, () => stopping);
  } catch (error) {
    channel.post({ type: 'failed', error: toWireError(error) });
  } finally {
    try {
      workload?.dispose();
    } catch (error) {
      log(`dispose failed: ${(error as Error).message}`);
    }
  }
}
