// What the coordinator's parts share: the logger slice, the live events, an agent's record, the actor's lifecycle,
// and the services (clock, journal-gated outbox, scheduler, ...) that membership and the job handlers act through.
import type { Clock } from '../protocol/clock.ts';
import type { AgentId, DeviceInfo, JobId, RunId, WireError } from '../protocol/messages.ts';
import type { PeerId } from '../protocol/transport.ts';
import type { CheckpointStore } from './checkpoint-store.ts';
import type { Experiment } from './experiment.ts';
import type { JournaledOutbox } from './journaled-outbox.ts';
import type { Scheduler } from './scheduler.ts';

/** The slice of pino the coordinator uses, so tests can pass a silent or capturing logger. */
export interface Log {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

export type CoordinatorEventKind =
  | 'joined'
  | 'suspect'
  | 'recovered'
  | 'lost'
  | 'left'
  | 'assigned'
  | 'reassigned'
  | 'finished'
  | 'failed'
  | 'rejected'
  | 'stale'
  | 'checkpoint_refused'
  | 'unplaceable'
  | 'gang'
  | 'run_finished'
  | 'launcher';

export interface CoordinatorEvent {
  time: number;
  kind: CoordinatorEventKind;
  text: string;
  jobId?: JobId;
  agentId?: AgentId;
}

export interface AgentRecord {
  agentId: AgentId;
  peer: PeerId;
  host: string;
  pid: number;
  backend: string;
  devices: DeviceInfo[];
  launcherId?: string;
  state: 'idle' | 'busy' | 'suspect' | 'draining';
  suspect: boolean;
  lastHeardAt: number;
  joinedAt: number;
  jobId?: JobId;
  /** When the current job was sent, so an early "idle" heartbeat (sent before the assign arrived) is forgiven. */
  assignedAt?: number;
}

export type Lifecycle = 'created' | 'running' | 'draining' | 'stopped';

/** The coordinator's services, as its parts (membership, job handlers) see them. */
export interface CoordinatorContext {
  readonly experiment: Experiment;
  readonly runId: RunId;
  readonly clock: Clock;
  readonly log: Log;
  readonly scheduler: Scheduler;
  readonly store: CheckpointStore;
  /** Journal first, then send: messages wait for the fsync of the entries before them. */
  readonly outbox: JournaledOutbox;
  lifecycle(): Lifecycle;
  emit(kind: CoordinatorEventKind, text: string, ids?: { jobId?: JobId; agentId?: AgentId }): void;
  /** Place pending jobs on idle agents (a no-op unless running). */
  schedule(): void;
  /** Put a job back in the queue (attempt+1 when counted); fails it once its attempts are used up. */
  requeue(jobId: JobId, reason: string, countAttempt: boolean, error?: WireError): void;
  failJob(jobId: JobId, error: WireError, text: string): void;
  /** Finish the run if every job is done or failed. */
  checkFinished(): void;
  /**
   * A member of a data-parallel gang is gone: the gang reforms without it (true), or it cannot and the caller
   * requeues the job as any other (false; also for jobs that are no gang's).
   */
  gangMemberGone(agentId: AgentId, jobId: JobId, reason: string): boolean;
  /** An agent was lost or left the running run: a batch launcher looks at its queue now (to replace it). */
  agentGone(): void;
}

/** An agent no longer holds a job. */
export function freeAgent(agent: AgentRecord): void {
  delete agent.jobId;
  if (agent.state === 'busy') agent.state = 'idle';
}
