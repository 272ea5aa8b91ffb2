// The scheduler owns the jobs: a queue of pending ones, placement on idle agents that match job.needs (one job
// per agent), attempts and epochs. Every assignment bumps the epoch, so messages from an older assignment can be
// told apart and dropped (fencing). Pure state: the coordinator journals and sends what it decides.
import type { AgentId, DeviceInfo, JobId, JobSpec, JobStatus, WireError } from '../protocol/messages.ts';
import type { CheckpointRef } from './journal.ts';

export type JobPhase = JobStatus['state'];

export interface JobState {
  spec: JobSpec;
  state: JobPhase;
  /** 1 on the first assignment; the cap is maxAttempts. */
  attempt: number;
  /** Bumped on every assignment; only messages carrying the current epoch count. */
  epoch: number;
  agentId?: AgentId;
  step: number;
  /** When the step last advanced (or the job was assigned), for the progress watchdog. */
  lastProgressAt: number;
  /** Acknowledged checkpoints, oldest first. */
  checkpoints: CheckpointRef[];
  loss?: number;
  accuracy?: number;
  tokensPerSecond?: number;
  startedAt?: number;
  finishedAt?: number;
  error?: WireError;
  /** Set when the job was lost, so the next assignment can say where it came from. */
  lost?: { agentId: AgentId; step: number };
}

/** What placement needs to know about an agent. */
export interface PlaceableAgent {
  agentId: AgentId;
  backend: string;
  devices: DeviceInfo[];
  /** Only 'idle' agents without a job get work. */
  state: 'idle' | 'busy' | 'suspect' | 'draining';
  jobId?: JobId;
  joinedAt: number;
}

export type RequeueOutcome = { outcome: 'requeued'; job: JobState } | { outcome: 'failed'; job: JobState };

export class Scheduler {
  readonly jobs = new Map<JobId, JobState>();
  /** Pending jobs in the order they should run; re-queued jobs go to the front (they have progress to keep). */
  private queue: JobId[] = [];

  constructor(
    specs: JobSpec[],
    private readonly maxAttempts: number,
    now: number,
  ) {
    for (const spec of specs) {
      this.jobs.set(spec.jobId, {
        spec,
        state: 'pending',
        attempt: 0,
        epoch: 0,
        step: 0,
        lastProgressAt: now,
        checkpoints: [],
      });
      this.queue.push(spec.jobId);
    }
  }

  get(jobId: JobId): JobState | undefined {
    return this.jobs.get(jobId);
  }

  pending(): JobId[] {
    return [...this.queue];
  }

  /** Replace a job's state wholesale (journal replay), keeping the queue in step. */
  restore(jobId: JobId, patch: Partial<JobState>): void {
    const job = this.jobs.get(jobId);
    if (!job) return;
    Object.assign(job, patch);
    this.queue = this.queue.filter((id) => id !== jobId);
    if (job.state === 'pending') this.queue.push(jobId);
  }

  static matches(spec: JobSpec, agent: PlaceableAgent): boolean {
    const needs = spec.needs;
    if (needs === undefined) return true;
    if (needs.backend !== undefined && needs.backend !== agent.backend) return false;
    if (needs.gpu === true && !agent.devices.some((d) => d.kind === 'gpu')) return false;
    return true;
  }

  /** Pair pending jobs with idle agents (longest-idle agents first); does not change state. */
  placements(agents: Iterable<PlaceableAgent>): { jobId: JobId; agentId: AgentId }[] {
    const free = [...agents]
      .filter((a) => a.state === 'idle' && a.jobId === undefined)
      .sort((a, b) => a.joinedAt - b.joinedAt);
    const out: { jobId: JobId; agentId: AgentId }[] = [];
    for (const jobId of this.queue) {
      const job = this.jobs.get(jobId);
      if (!job) continue;
      const i = free.findIndex((a) => Scheduler.matches(job.spec, a));
      if (i < 0) continue;
      const [agent] = free.splice(i, 1);
      if (agent) out.push({ jobId, agentId: agent.agentId });
      if (free.length === 0) break;
    }
    return out;
  }

  /** pending -> assigned: a new attempt and a new epoch. */
  assign(jobId: JobId, agentId: AgentId, now: number): JobState {
    const job = this.must(jobId);
    if (job.state !== 'pending') throw new Error(`cannot assign ${jobId}: it is ${job.state}`);
    job.state = 'assigned';
    job.attempt += 1;
    job.epoch += 1;
    job.agentId = agentId;
    job.lastProgressAt = now;
    job.startedAt ??= now;
    const last = job.checkpoints.at(-1);
    job.step = last?.step ?? 0;
    this.queue = this.queue.filter((id) => id !== jobId);
    return job;
  }

  /** True when a message with this epoch from this agent belongs to the job's current assignment. */
  isCurrent(jobId: JobId, epoch: number, agentId: AgentId): boolean {
    const job = this.jobs.get(jobId);
    return (
      job !== undefined &&
      job.epoch === epoch &&
      job.agentId === agentId &&
      (job.state === 'assigned' || job.state === 'running' || job.state === 'evaluating')
    );
  }

  progress(jobId: JobId, step: number, now: number): void {
    const job = this.jobs.get(jobId);
    if (!job) return;
    if (job.state === 'assigned') job.state = 'running';
    if (step > job.step) {
      job.step = step;
      job.lastProgressAt = now;
    }
  }

  /**
   * The job's agent is gone (lost, left, or the job failed retryably): back to the queue's front with its
   * checkpoints, or failed when the attempts are used up. `countAttempt` false when it was not the job's fault
   * (a coordinator restart or a drained agent).
   */
  requeue(jobId: JobId, countAttempt = true): RequeueOutcome {
    const job = this.must(jobId);
    if (job.agentId !== undefined) job.lost = { agentId: job.agentId, step: job.step };
    delete job.agentId;
    if (!countAttempt) job.attempt = Math.max(0, job.attempt - 1);
    if (job.attempt >= this.maxAttempts) {
      job.state = 'failed';
      job.error ??= {
        name: 'AttemptsExhaustedError',
        message: `gave up after ${job.attempt} attempts`,
        retryable: false,
      };
      return { outcome: 'failed', job };
    }
    job.state = 'pending';
    this.queue = [jobId, ...this.queue.filter((id) => id !== jobId)];
    return { outcome: 'requeued', job };
  }

  fail(jobId: JobId, error: WireError, now: number): JobState {
    const job = this.must(jobId);
    job.state = 'failed';
    job.error = error;
    job.finishedAt = now;
    delete job.agentId;
    this.queue = this.queue.filter((id) => id !== jobId);
    return job;
  }

  finish(jobId: JobId, now: number): JobState {
    const job = this.must(jobId);
    job.state = 'done';
    job.step = job.spec.training.steps;
    job.finishedAt = now;
    delete job.agentId;
    this.queue = this.queue.filter((id) => id !== jobId);
    return job;
  }

  allFinished(): boolean {
    for (const job of this.jobs.values()) if (job.state !== 'done' && job.state !== 'failed') return false;
    return true;
  }

  counts(): Record<JobPhase, number> {
    const c: Record<JobPhase, number> = { pending: 0, assigned: 0, running: 0, evaluating: 0, done: 0, failed: 0 };
    for (const job of this.jobs.values()) c[job.state]++;
    return c;
  }

  private must(jobId: JobId): JobState {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`unknown job ${jobId}`);
    return job;
  }
}
