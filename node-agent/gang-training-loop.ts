// The training loop of one replica in a data-parallel gang, in the worker thread. It trains one step at a time;
// each step's gradients go to the agent thread ('reduce', transferred, not copied), which sums them over the gang
// with the communicator and answers. When the gang breaks or reforms, the step is undone and the replica pauses at
// the step boundary ('gang_paused') until the agent seats it in the next generation ('gang_resume', with a peer's
// state when this one was behind). Rank 0 checkpoints, exports the final model and evaluates; the others end with
// 'gang_done'. Checkpoint requests (a drain) are served at any step boundary, paused or training.
import { toWireError } from '../protocol/errors.ts';
import { GangInterruptedError } from '../src/train/errors.ts';
import type { StepTiming, Workload } from '../src/train/workload.ts';
import { WorkloadModuleError } from './errors.ts';
import {
  exportAndEvaluate,
  openWorkload,
  postCheckpoint,
  transferable,
  yieldToEventLoop,
  type WorkerChannel,
} from './training-loop.ts';
import type { ToWorker, WorkerStart } from './worker-protocol.ts';

type Resume = Extract<ToWorker, { type: 'gang_resume' }>;

/** The worker's side of the conversation with the agent thread: what arrived, and a wake-up for whoever waits. */
class AgentRequests {
  readonly checkpoints: { requestId: number; stop: boolean }[] = [];
  readonly resumes: Resume[] = [];
  stopping = false;
  snapshotWanted = false;
  private readonly reductions = new Map<number, { resolve: (d: Float32Array) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private wake: (() => void) | undefined;

  constructor(private readonly channel: WorkerChannel) {
    channel.onMessage((message) => this.on(message));
  }

  /** The gang's sum of `flat` (whose buffer is handed over), or GangInterruptedError. */
  reduce(flat: Float32Array): Promise<Float32Array> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.reductions.set(id, { resolve, reject });
      this.channel.post({ type: 'reduce', id, data: flat }, transferable(new Uint8Array(flat.buffer)));
    });
  }

  /** Resolves when the next message arrives. */
  next(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  private on(message: ToWorker): void {
    switch (message.type) {
      case 'stop':
        this.stopping = true;
        break;
      case 'checkpoint':
        this.checkpoints.push({ requestId: message.requestId, stop: message.stop === true });
        break;
      case 'reduced':
      case 'reduce_failed': {
        const waiter = this.reductions.get(message.id);
        this.reductions.delete(message.id);
        if (message.type === 'reduced') waiter?.resolve(message.data);
        else waiter?.reject(new GangInterruptedError(message.reason));
        break;
      }
      case 'gang_resume':
        this.resumes.push(message);
        break;
      case 'gang_snapshot':
        this.snapshotWanted = true;
        break;
      case 'start':
        break;
    }
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** Steps between two lines in the agent's log on where a gang step's time goes. */
const TIMING_EVERY = 50;

function logTiming(t: StepTiming, rank: number, ranks: number, log: (line: string) => void): void {
  if (t.steps === 0) return;
  const per = (ms: number): string => (ms / t.steps).toFixed(1);
  log(
    `gang step time, rank ${rank} of ${ranks}, mean of ${t.steps} steps: ${per(t.computeMs)} ms gradients, ${per(t.reduceMs)} ms allreduce (waiting for the slowest rank included), ${per(t.applyMs)} ms update`,
  );
}

export async function runGangTraining(start: WorkerStart, channel: WorkerChannel): Promise<void> {
  const agent = new AgentRequests(channel);
  const log = (line: string): void => channel.post({ type: 'log', line });
  let workload: Workload | undefined;
  try {
    workload = await openWorkload(start, { log, gang: { reduce: (flat) => agent.reduce(flat) } });
    const w = workload;
    const gang = w.gang;
    if (gang === undefined)
      throw new WorkloadModuleError(`workload module ${start.workloadModule} cannot train data-parallel (no gang)`);
    channel.post({ type: 'started', backend: w.backend, step: w.step, parameterCount: w.parameterCount });

    const total = start.spec.training.steps;
    const every = start.spec.checkpointEvery > 0 ? start.spec.checkpointEvery : Infinity;
    let rank = -1;
    const sendCheckpoint = (reason: 'periodic' | 'requested', requestId?: number): Promise<void> =>
      postCheckpoint(w, channel, reason, requestId);
    /** Checkpoint requests and snapshots, at a step boundary; false once a drain's checkpoint said stop. */
    const serve = async (): Promise<boolean> => {
      for (let r = agent.checkpoints.shift(); r !== undefined; r = agent.checkpoints.shift()) {
        await sendCheckpoint('requested', r.requestId);
        if (r.stop) agent.stopping = true;
      }
      if (agent.snapshotWanted) {
        agent.snapshotWanted = false;
        const data = await w.checkpoint();
        channel.post({ type: 'gang_state', step: w.step, data }, transferable(data));
      }
      return !agent.stopping;
    };

    training: for (;;) {
      channel.post({ type: 'gang_paused', step: w.step });
      let resume: Resume | undefined;
      while (resume === undefined) {
        if (!(await serve())) break training;
        resume = agent.resumes.shift();
        if (resume === undefined) await agent.next();
      }
      if (resume.state !== undefined) gang.restore(resume.state);
      gang.setMembership(resume.rank, resume.ranks);
      rank = resume.rank;
      while (w.step < total) {
        if (!(await serve())) break training;
        const before = w.step;
        let points;
        try {
          points = await w.trainSteps(1);
        } catch (error) {
          if (error instanceof GangInterruptedError) {
            log(`gang interrupted at step ${w.step}: ${error.message}`);
            continue training;
          }
          throw error;
        }
        if (points.length > 0) channel.post({ type: 'metrics', points });
        if (w.step % TIMING_EVERY === 0) logTiming(gang.takeTiming(), rank, resume.ranks, log);
        if (rank === 0 && w.step < total && Math.floor(w.step / every) > Math.floor(before / every))
          await sendCheckpoint('periodic');
        await yieldToEventLoop();
      }
      if (!(await serve())) break training;
      if (rank === 0) await exportAndEvaluate(w, channel, () => agent.stopping);
      else channel.post({ type: 'gang_done', step: w.step });
      return;
    }
    channel.post({ type: 'stopped', step: w.step });
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
