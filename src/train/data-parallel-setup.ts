// Builds a data-parallel replica for a job: the same model, data source and optimizer as the single-agent workload,
// optionally restored from an ordinary checkpoint (a single-agent one, or one from a gang of any size).
import type { JobSpec, MetricPoint } from '../../protocol/messages.ts';
import { createSource } from '../data/tasks.ts';
import { tokenizer } from '../data/tokenizer.ts';
import { DataParallelTrainer, type Membership, type Reducer } from './data-parallel.ts';
import { TrainConfigError } from './errors.ts';
import { checkJobSpec } from './job.ts';
import { buildModel } from './tf-workload.ts';

export interface ReplicaOptions {
  membership: Membership;
  hashEvery?: number;
  /** Checkpoint bytes to resume from: weights, optimizer moments, step and data position. */
  resumeFrom?: Uint8Array;
  onStep?: (point: MetricPoint) => void;
}

/** What the reducer needs of a communicator (protocol/communicator.ts's Communicator fits). */
export interface AllreduceLink {
  allreduce(data: Float32Array, op: 'sum', options: { inPlace: boolean }): Promise<Float32Array>;
}

/** The production reducer: the communicator's ring allreduce, summing in place (the buffer is the step's own). */
export function allreduceReducer(comm: AllreduceLink): Reducer {
  return (flat) => comm.allreduce(flat, 'sum', { inPlace: true });
}

/** A replica on the active TensorFlow.js backend (the caller selects it, as for the single-agent workload). */
export function createReplica(spec: JobSpec, options: ReplicaOptions): DataParallelTrainer {
  const errors = checkJobSpec(spec);
  if (errors.length > 0) throw new TrainConfigError(`invalid job ${String(spec.jobId)}: ${errors.join('; ')}`);
  const model = buildModel(spec);
  let trainer: DataParallelTrainer | undefined;
  try {
    trainer = new DataParallelTrainer({
      model,
      source: createSource(spec.task, spec.seed, 'train'),
      tokenizer,
      job: spec,
      membership: options.membership,
      ...(options.hashEvery === undefined ? {} : { hashEvery: options.hashEvery }),
      ...(options.onStep === undefined ? {} : { onStep: options.onStep }),
    });
    if (options.resumeFrom !== undefined) trainer.restore(options.resumeFrom);
    return trainer;
  } catch (error) {
    trainer?.dispose();
    model.dispose();
    throw error;
  }
}
