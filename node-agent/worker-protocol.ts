// Typed messages between the agent thread and its training worker (node:worker_threads). The agent thread
// talks ZeroMQ and keeps time; the worker owns the Workload and TensorFlow.js.
import type { Evaluation, JobSpec, MetricPoint, WireError } from '../protocol/messages.ts';
import type { BackendName } from '../src/train/workload.ts';

/** What the worker needs to start a job; passed as workerData (structured-cloned). */
export interface WorkerStart {
  /** URL (file:// or other) of a module exporting `createWorkload: CreateWorkload`. */
  workloadModule: string;
  spec: JobSpec;
  backend?: BackendName;
  /** A verified checkpoint blob to resume from. */
  resumeFrom?: Uint8Array;
  /** Most steps per trainSteps call (fewer when steps are slow), so checkpoint requests and stops are served promptly. */
  sliceSteps: number;
  /** Train as one replica of a data-parallel gang (gang-training-loop.ts): the agent thread sums the gradients. */
  gang?: boolean;
}

/** What a spare worker loads while it waits for a job: the workload module and the backend it will use. */
export interface WarmSpec {
  workloadModule: string;
  backend?: BackendName;
}

/** workerData: a job to run now, or a spare to warm up until its job arrives as a 'start' message. */
export type WorkerData = { start: WorkerStart } | { warm: WarmSpec };

export type ToWorker =
  /** The job for a spare worker (sent once, first). */
  | { type: 'start'; start: WorkerStart }
  /**
   * Produce a checkpoint at the next slice boundary. With `stop` (a drain), train no further after it: the steps
   * past the checkpoint would be trained again on resume.
   */
  | { type: 'checkpoint'; requestId: number; stop?: boolean }
  /** Stop after the current slice and dispose of the workload. */
  | { type: 'stop' }
  /** Gang: the sum of a 'reduce' over the gang (transferred), or why there is none (the step is then undone). */
  | { type: 'reduced'; id: number; data: Float32Array }
  | { type: 'reduce_failed'; id: number; reason: string }
  /** Gang: train on as `rank` of `ranks`, from `state` (a peer's, when this replica's step was behind). */
  | { type: 'gang_resume'; rank: number; ranks: number; state?: Uint8Array }
  /** Gang: post this replica's whole state (gang_state), to be broadcast to the peers that are behind. */
  | { type: 'gang_snapshot' };

export type FromWorker =
  | { type: 'started'; backend: string; step: number; parameterCount: number }
  | { type: 'metrics'; points: MetricPoint[] }
  | { type: 'checkpoint'; reason: 'periodic' | 'requested'; requestId?: number; step: number; data: Uint8Array }
  /** The exported final model, sent before evaluation so its upload overlaps evaluating. */
  | { type: 'final'; step: number; data: Uint8Array }
  | { type: 'evaluation'; evaluation: Evaluation }
  | { type: 'failed'; error: WireError }
  | { type: 'log'; line: string }
  | { type: 'stopped'; step: number }
  /** Gang: sum this flat buffer over the gang (transferred); answered with reduced or reduce_failed. */
  | { type: 'reduce'; id: number; data: Float32Array }
  /** Gang: standing at a step boundary (after start, or after the gang broke) until gang_resume. */
  | { type: 'gang_paused'; step: number }
  | { type: 'gang_state'; step: number; data: Uint8Array }
  /** Gang, ranks other than 0: the last step is trained; nothing left to do here. */
  | { type: 'gang_done'; step: number };

const FROM_WORKER_TYPES: ReadonlySet<string> = new Set([
  'started',
  'metrics',
  'checkpoint',
  'final',
  'evaluation',
  'failed',
  'log',
  'stopped',
  'reduce',
  'gang_paused',
  'gang_state',
  'gang_done',
]);

/** The worker is our own code, but a cheap shape check keeps a bug there from crashing the agent thread. */
export function isFromWorker(value: unknown): value is FromWorker {
  if (typeof value !== 'object' || value === null) return false;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !FROM_WORKER_TYPES.has(type)) return false;
  const v = value as Record<string, unknown>;
  switch (type) {
    case 'metrics':
      return Array.isArray(v['points']);
    case 'checkpoint':
    case 'final':
    case 'gang_state':
      return v['data'] instanceof Uint8Array && typeof v['step'] === 'number';
    case 'reduce':
      return v['data'] instanceof Float32Array && typeof v['id'] === 'number';
    case 'evaluation':
      return typeof v['evaluation'] === 'object' && v['evaluation'] !== null;
    case 'failed':
      return typeof v['error'] === 'object' && v['error'] !== null;
    default:
      return true;
  }
}

export function isToWorker(value: unknown): value is ToWorker {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { type?: unknown; requestId?: unknown; start?: unknown; id?: unknown; data?: unknown };
  return (
    v.type === 'stop' ||
    v.type === 'gang_snapshot' ||
    v.type === 'gang_resume' ||
    (v.type === 'reduced' && typeof v.id === 'number' && v.data instanceof Float32Array) ||
    (v.type === 'reduce_failed' && typeof v.id === 'number') ||
    (v.type === 'checkpoint' && typeof v.requestId === 'number') ||
    (v.type === 'start' && typeof v.start === 'object' && v.start !== null)
  );
}
