// The seam between the node agent and the training code: the agent drives a Workload and never
// touches TensorFlow.js itself. Implemented by src/train/tf-workload.ts.
import type { Evaluation, JobSpec, MetricPoint } from '../../protocol/messages.ts';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export interface WorkloadOptions {
  /** Force a backend; otherwise the best one that loads is picked (and logged). */
  backend?: BackendName;
  /** A checkpoint blob (as produced by Workload.checkpoint) to resume from exactly. */
  resumeFrom?: Uint8Array;
  /** Where to report what happened, e.g. which backend was picked and why others were skipped. */
  log?: (line: string) => void;
  /**
   * Train as one replica of a data-parallel gang: every step's flat gradient buffer goes through `reduce`, which
   * sums it over the gang (and rejects when the gang breaks: the step is then undone).
   */
  gang?: { reduce: (flat: Float32Array) => Promise<Float32Array> };
}

/** What a gang replica offers beyond a Workload: its seat, and the state a new generation is synchronised from. */
export interface GangControl {
  setMembership(rank: number, ranks: number): void;
  /** Replace the whole training state (weights, optimizer, step, data position) with a peer's. */
  restore(state: Uint8Array): void;
  /** Where the steps applied since the last call spent their time (ms in all), and a fresh count from now. */
  takeTiming(): StepTiming;
}

export interface StepTiming {
  steps: number;
  /** This rank's gradients: forward, backward and the read-back of the flat buffer. */
  computeMs: number;
  /** In the reducer: the allreduce, its copies, and waiting for the slowest rank. */
  reduceMs: number;
  /** Unflattening the sum and the optimizer's update. */
  applyMs: number;
}

export interface Workload {
  readonly spec: JobSpec;
  readonly backend: BackendName;
  /** Steps completed so far (continues from the checkpoint on resume). */
  readonly step: number;
  readonly parameterCount: number;
  /** Train up to n more steps (never past spec.training.steps); one MetricPoint per step. */
  trainSteps(n: number): Promise<MetricPoint[]>;
  /** A self-describing binary: weights, optimizer state, step, RNG state, data position, sha256. */
  checkpoint(): Promise<Uint8Array>;
  /** Decode the evaluation sets and score them. */
  evaluate(): Promise<Evaluation>;
  /** The trained model as one blob (a checkpoint is fine), for final_model/. */
  exportModel(): Promise<Uint8Array>;
  /** Present when created with options.gang. */
  readonly gang?: GangControl;
  dispose(): void;
}

export type CreateWorkload = (spec: JobSpec, options?: WorkloadOptions) => Promise<Workload>;

/**
 * Optional second export of a workload module: load what createWorkload will need (libraries, the backend)
 * before any job is known, so an agent's spare worker is ready the moment a job arrives.
 */
export type PrepareWorkload = (options?: Pick<WorkloadOptions, 'backend' | 'log'>) => Promise<void>;
