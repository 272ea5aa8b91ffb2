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
  /** A data-parallel job's gang: its generation and members in rank order (agentId is rank 0). */
  gang?: { generation: number; members: AgentId[] };
  /** Agents loading a replica to join the gang at its next reform (growth). */
  joining?: AgentId[];
  /** The last step whose metrics arrived: a new rank 0 streams from the step after it. */
  metricsStep?: number;
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

/** A pending job onto an agent; a data-parallel job onto a gang (agentId is its rank 0). */
export interface Placement {
  jobId: JobId;
  agentId: AgentId;
  gang?: AgentId[];
}

/** The agents a data-parallel job starts on now (one backend, longest idle first), or undefined to wait. */
function pickGang(
  spec: JobSpec,
  dp: NonNullable<JobSpec['training']['dataParallel']>,
  all: readonly PlaceableAgent[],
  free: readonly PlaceableAgent[],
): PlaceableAgent[] | undefined {
  const minRanks = dp.minRanks ?? 1;
  let best: PlaceableAgent[] | undefined;
  for (const backend of new Set(free.map((a) => a.backend))) {
    const could = all.filter((a) => a.backend === backend && Scheduler.matches(spec, a)).length;
    const size = Math.max(minRanks, Math.min(dp.ranks, could));
    const idle = free.filter((a) => a.backend === backend && Scheduler.matches(spec, a));
    if (idle.length >= size && (best === undefined || size > best.length)) best = idle.slice(0, size);
  }
  return best;
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

  /**
   * Pair pending jobs with idle agents (longest-idle agents first); does not change state. A data-parallel job takes
   * a gang of agents of one backend at once, or nothing: then it holds a reservation at its place in the queue, and no
   * job behind it is placed, so single-agent jobs cannot starve it. Its size is `ranks`, or fewer (never below
   * minRanks) when fewer agents that could ever run it are here at all.
   */
  placements(agents: Iterable<PlaceableAgent>): Placement[] {
    const all = [...agents];
    const free = all.filter((a) => a.state === 'idle' && a.jobId === undefined).sort((a, b) => a.joinedAt - b.joinedAt);
    const out: Placement[] = [];
    for (const jobId of this.queue) {
      const job = this.jobs.get(jobId);
      if (!job) continue;
      const dp = job.spec.training.dataParallel;
      if (dp !== undefined) {
        const gang = pickGang(job.spec, dp, all, free);
        if (gang === undefined) break;
        for (const a of gang) free.splice(free.indexOf(a), 1);
        out.push({ jobId, agentId: gang[0]!.agentId, gang: gang.map((a) => a.agentId) });
        if (free.length === 0) break;
        continue;
      }
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

  /** True when a message with this epoch from this agent belongs to the job's current assignment (a gang: any seat). */
  isCurrent(jobId: JobId, epoch: number, agentId: AgentId): boolean {
    const job = this.jobs.get(jobId);
    return (
      job !== undefined &&
      job.epoch === epoch &&
      (job.agentId === agentId ||
        job.gang?.members.includes(agentId) === true ||
        job.joining?.includes(agentId) === true) &&
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
    delete job.gang;
    delete job.joining;
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
    delete job.joining;
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
