// The compute-node actor. It says hello, heartbeats, runs one job at a time in a worker (job-runner.ts),
// streams metrics in batches, moves checkpoints in verified chunks, and leaves cleanly: on `shutdown`, on
// SIGTERM/SIGINT (after checkpointing), or when the coordinator has been silent past the death timeout.
// Transport, clock and runner are injected so logic tests run on the memory transport and a SimulatedClock.
import os from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { metricsMessage } from '../protocol/metric-columns.ts';
import type {
  AgentId,
  AgentToCoordinator,
  Assign,
  CheckpointChunk,
  CheckpointId,
  CoordinatorToAgent,
  DeviceInfo,
  Evaluation,
  JobSpec,
  WireError,
} from '../protocol/messages.ts';
import { systemClock, type Clock, type TimerHandle } from '../protocol/clock.ts';
import type { ClientTransport } from '../protocol/transport.ts';
import { newAgentId, newCheckpointId } from '../protocol/ids.ts';
import { toWireError } from '../protocol/errors.ts';
import type { BackendName } from '../src/train/workload.ts';
import { ChunkAssembler, chunkBlob, MAX_CHUNK_BYTES } from './checkpoint-transfer.ts';
import { MetricsBuffer } from './metrics-buffer.ts';
import { createWorkerRunner, type JobHandle, type JobRunner } from './job-runner.ts';
import { probeBackend } from './backend-probe.ts';
import { cpuDevice, detectDevices } from './devices.ts';
import { WALLTIME_ENV, armWalltimeDrain } from './walltime.ts';
import type { FromWorker } from './worker-protocol.ts';
import { AgentBusyError, AgentConfigError, CheckpointTransferError, WorkerCrashedError } from './errors.ts';

/** Exit codes of runAgent (and of `pe-arena agent`). */
export const AGENT_EXIT = {
  ok: 0,
  fatal: 1,
  rejected: 2,
  coordinatorGone: 3,
} as const;
export type AgentExitCode = (typeof AGENT_EXIT)[keyof typeof AGENT_EXIT];

export const AGENT_DEFAULTS = {
  deathTimeoutMs: 60_000,
  maxMetricBuffer: 100_000,
  metricsFlushMs: 250,
  metricsBatch: 50,
  helloRetryMs: 5_000,
  ackTimeoutMs: 30_000,
  fetchTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  sliceSteps: 10,
  /** Re-sends after the first try, for uploads refused by the coordinator and for resume downloads. */
  transferRetries: 3,
  chunkBytes: MAX_CHUNK_BYTES,
  closeGraceMs: 300,
} as const;

/** Everything the actor needs, compiled once by runAgent (or built by a test). */
export interface AgentConfig {
  agentId: AgentId;
  host: string;
  pid: number;
  backend: string;
  requestedBackend?: BackendName;
  devices: DeviceInfo[];
  launcherId?: string;
  workloadModule: string;
  deathTimeoutMs: number;
  maxMetricBuffer: number;
  metricsFlushMs: number;
  metricsBatch: number;
  helloRetryMs: number;
  ackTimeoutMs: number;
  fetchTimeoutMs: number;
  drainTimeoutMs: number;
  sliceSteps: number;
  transferRetries: number;
  chunkBytes: number;
  /** Real ms to wait after the last send before closing: the ZeroMQ socket closes with linger 0. */
  closeGraceMs: number;
}

export interface AgentDeps {
  transport: ClientTransport;
  clock: Clock;
  runner: JobRunner;
  logger: Logger;
}

export type AgentState = 'connecting' | 'ready' | 'draining' | 'stopped';

export interface AgentExit {
  code: AgentExitCode;
  reason: string;
}

/** A checkpoint or final model on its way up, until the coordinator acknowledges it. */
interface Upload {
  checkpointId: CheckpointId;
  kind: 'checkpoint' | 'final';
  step: number;
  data: Uint8Array;
  attempts: number;
  timer: TimerHandle | undefined;
  /** Called once: true when acknowledged, false when given up. */
  settle: (ok: boolean) => void;
}

interface ResumeFetch {
  checkpointId: CheckpointId;
  step: number;
  sha256: string;
  assembler: ChunkAssembler;
  attempts: number;
  timer: TimerHandle | undefined;
}

interface ActiveJob {
  spec: JobSpec;
  epoch: number;
  attempt: number;
  phase: 'fetching' | 'training' | 'finishing';
  step: number;
  resumeStep: number | undefined;
  fetch: ResumeFetch | undefined;
  handle: JobHandle | undefined;
  uploads: Map<CheckpointId, Upload>;
  /** Periodic checkpoints go up one at a time; a newer one waiting replaces an older one waiting. */
  nextPeriodic: { step: number; data: Uint8Array } | undefined;
  periodicInFlight: boolean;
  finalAcked: boolean;
  evaluation: Evaluation | undefined;
  /** Resolvers waiting for a requested checkpoint (drain on SIGTERM). */
  checkpointWaiters: Map<number, (step: number, data: Uint8Array) => void>;
  /** Called once when the job ends for any reason (a drain waiting on it stops waiting). */
  endListeners: (() => void)[];
  ended: boolean;
}

const MAX_PENDING_SENDS = 1_000;

export class NodeAgent {
  private lifecycle: AgentState = 'connecting';
  private agentIdNow: AgentId;
  private welcomedOnce = false;
  private welcomed = false;
  private heartbeatIntervalMs = 1_000;
  private heartbeatSeq = 0;
  private heartbeatTimer: TimerHandle | undefined;
  private helloTimer: TimerHandle | undefined;
  private deathTimer: TimerHandle | undefined;
  private flushTimer: TimerHandle | undefined;
  private lastHeardAt: number;
  private job: ActiveJob | undefined;
  private readonly metrics: MetricsBuffer;
  /** Settles after every send before it (the transport settles sends in order). */
  private lastSend: Promise<boolean> = Promise.resolve(true);
  private pendingSends = 0;
  private nextRequestId = 1;
  /** Lines carry the current agent id; replaced when the agent rejoins under a fresh one. */
  private log: Logger;
  private exitResolve!: (exit: AgentExit) => void;
  private exitValue: AgentExit | undefined;
  /** Resolves once the agent has stopped, with its exit code and the reason. */
  readonly exited: Promise<AgentExit>;

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.agentIdNow = config.agentId;
    this.log = deps.logger.child({ agentId: config.agentId });
    this.lastHeardAt = deps.clock.now();
    this.metrics = new MetricsBuffer(config.maxMetricBuffer);
    this.exited = new Promise((resolve) => {
      this.exitResolve = resolve;
    });
  }

  get state(): AgentState {
    return this.lifecycle;
  }

  get agentId(): AgentId {
    return this.agentIdNow;
  }

  /** What the agent is doing, for tests and logs. */
  get current(): { jobId: string; epoch: number; step: number; phase: ActiveJob['phase'] } | undefined {
    const j = this.job;
    return j === undefined ? undefined : { jobId: j.spec.jobId, epoch: j.epoch, step: j.step, phase: j.phase };
  }

  get bufferedMetrics(): number {
    return this.metrics.size;
  }

  start(): void {
    void this.readLoop();
    this.sendHello();
    this.armDeathTimer();
  }

  // -------------------------------------------------------------------------------------------
  // Inbound

  private async readLoop(): Promise<void> {
    try {
      for await (const inbound of this.deps.transport.inbound()) {
        if (this.lifecycle === 'stopped') break;
        if (inbound.kind === 'malformed') {
          this.log.warn(
            { err: inbound.error, field: inbound.error.field },
            `malformed message from the coordinator: ${inbound.error.message}`,
          );
          continue;
        }
        this.heard();
        try {
          this.handle(inbound.message);
        } catch (error) {
          // Bad input must never take the agent down: log what and where, keep serving.
          this.log.error(
            { err: error, type: inbound.message.type },
            `failed to handle ${inbound.message.type}: ${(error as Error).message}`,
          );
        }
      }
    } catch (error) {
      this.log.error({ err: error }, 'transport inbound stream failed');
    }
    if (this.lifecycle !== 'stopped') this.log.warn('transport inbound stream ended; waiting for the death timeout');
  }

  private heard(): void {
    const wasAway = !this.coordinatorReachable();
    this.lastHeardAt = this.deps.clock.now();
    if (wasAway && this.metrics.size > 0) {
      this.log.info(
        { buffered: this.metrics.size, dropped: this.metrics.dropped },
        'coordinator is back; flushing buffered metrics',
      );
      this.flushMetrics(true);
    }
    if (wasAway && this.job !== undefined) this.pumpPeriodic(this.job);
  }

  /** Heard from within a few heartbeats: otherwise metrics wait in the buffer instead of piling up in sockets. */
  private coordinatorReachable(): boolean {
    return this.deps.clock.now() - this.lastHeardAt < Math.max(3 * this.heartbeatIntervalMs, 2_000);
  }

  private handle(message: CoordinatorToAgent): void {
    switch (message.type) {
      case 'welcome':
        return this.onWelcome(message.agentId, message.heartbeatIntervalMs, message.runId);
      case 'reject':
        return this.onReject(message.reason, message.version);
      case 'heartbeat_ack':
        return;
      case 'assign':
        return this.onAssign(message);
      case 'cancel':
        return this.onCancel(message.jobId, message.epoch, message.reason);
      case 'checkpoint_chunk':
        return this.onChunk(message);
      case 'checkpoint_ack':
        return this.onAck(message.jobId, message.epoch, message.checkpointId, message.ok, message.reason);
      case 'shutdown':
        this.log.info({ reason: message.reason }, 'coordinator asked us to shut down');
        // Checkpoint a running job first (bounded): a draining coordinator still accepts it, and a resumed run continues from it.
        void this.drain(`shutdown: ${message.reason}`, true);
        return;
      case 'error': {
        this.log.warn(
          { error: message.error, context: message.context },
          `coordinator reported an error: ${message.error.message}`,
        );
        // The coordinator could not serve our checkpoint_request: ask again now (bounded) rather than after a timeout.
        const job = this.job;
        if (message.context === 'checkpoint_request' && job?.phase === 'fetching')
          this.retryResume(job, `the coordinator answered: ${message.error.message}`);
        return;
      }
      case 'status':
        return;
    }
  }

  private onWelcome(agentId: AgentId, heartbeatIntervalMs: number, runId: string): void {
    if (this.welcomed || this.lifecycle === 'stopped') return;
    if (agentId !== this.agentIdNow) {
      this.log.warn({ theirs: agentId, ours: this.agentIdNow }, 'welcome names another agent id; ignoring it');
      return;
    }
    this.welcomed = true;
    this.welcomedOnce = true;
    if (this.lifecycle === 'connecting') this.lifecycle = 'ready';
    this.heartbeatIntervalMs =
      Number.isFinite(heartbeatIntervalMs) && heartbeatIntervalMs >= 10 ? heartbeatIntervalMs : 1_000;
    this.deps.clock.clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.deps.clock.clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = this.deps.clock.setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
    this.log.info({ runId, heartbeatIntervalMs: this.heartbeatIntervalMs }, 'welcomed by the coordinator');
  }

  private onReject(reason: string, version: number): void {
    if (!this.welcomedOnce) {
      this.log.error({ reason, ours: PROTOCOL_VERSION, theirs: version }, `rejected by the coordinator: ${reason}`);
      this.finish({ code: AGENT_EXIT.rejected, reason });
      return;
    }
    if (!this.welcomed) {
      // Already saying hello again: more rejects are answers to messages sent before, unless the version changed.
      if (version !== PROTOCOL_VERSION) {
        this.log.error({ reason, ours: PROTOCOL_VERSION, theirs: version }, `rejected by the coordinator: ${reason}`);
        this.finish({ code: AGENT_EXIT.rejected, reason });
      }
      return;
    }
    if (this.lifecycle !== 'ready') return; // draining: we are leaving anyway, no point in rejoining
    // The coordinator no longer knows us (we were declared dead, or it restarted): drop the job, rejoin fresh.
    const old = this.agentIdNow;
    this.abandonJob(`rejected: ${reason}`);
    this.welcomed = false;
    this.deps.clock.clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.agentIdNow = newAgentId();
    this.log = this.deps.logger.child({ agentId: this.agentIdNow });
    this.log.warn({ reason, oldAgentId: old }, 'rejected after welcome; rejoining as a fresh agent');
    this.sendHello();
  }

  private onAssign(assign: Assign): void {
    const { job: spec, epoch, attempt } = assign;
    const current = this.job;
    if (this.lifecycle === 'draining' || this.lifecycle === 'stopped') {
      this.failAssignment(
        spec,
        epoch,
        new AgentBusyError(`agent ${this.agentIdNow} is draining and takes no new work`),
      );
      return;
    }
    if (current !== undefined) {
      if (current.spec.jobId === spec.jobId && current.epoch === epoch) return; // a duplicate
      if (current.spec.jobId === spec.jobId && epoch > current.epoch) {
        this.abandonJob(`reassigned with epoch ${epoch}`);
      } else {
        this.failAssignment(
          spec,
          epoch,
          new AgentBusyError(`agent ${this.agentIdNow} is busy with ${current.spec.jobId} (epoch ${current.epoch})`),
        );
        return;
      }
    }
    const job: ActiveJob = {
      spec,
      epoch,
      attempt,
      phase: 'training',
      step: 0,
      resumeStep: assign.resumeFrom?.step,
      fetch: undefined,
      handle: undefined,
      uploads: new Map(),
      nextPeriodic: undefined,
      periodicInFlight: false,
      finalAcked: false,
      evaluation: undefined,
      checkpointWaiters: new Map(),
      endListeners: [],
      ended: false,
    };
    this.job = job;
    this.metrics.clear();
    this.log.info({ jobId: spec.jobId, epoch, attempt, resumeFrom: assign.resumeFrom }, `assigned ${spec.jobId}`);
    if (assign.resumeFrom !== undefined) {
      const r = assign.resumeFrom;
      job.phase = 'fetching';
      job.step = r.step;
      job.fetch = {
        checkpointId: r.checkpointId,
        step: r.step,
        sha256: r.sha256,
        assembler: new ChunkAssembler(r.checkpointId, r.sha256),
        attempts: 0,
        timer: undefined,
      };
      this.requestResumeCheckpoint(job);
    } else {
      this.launch(job, undefined);
    }
    this.sendHeartbeat();
  }

  private failAssignment(spec: JobSpec, epoch: number, error: Error): void {
    this.log.warn({ jobId: spec.jobId, epoch }, error.message);
    void this.send({ type: 'job_failed', jobId: spec.jobId, epoch, error: toWireError(error) });
  }

  private onCancel(jobId: string, epoch: number, reason: string): void {
    const job = this.job;
    if (job === undefined || job.spec.jobId !== jobId || epoch < job.epoch) {
      this.log.info({ jobId, epoch, reason }, 'cancel for a job we do not run; ignored');
      return;
    }
    this.abandonJob(`cancelled: ${reason}`);
    this.sendHeartbeat();
  }

  // -------------------------------------------------------------------------------------------
  // Resume: pull the checkpoint, verify it, then start the worker from it

  private requestResumeCheckpoint(job: ActiveJob): void {
    const f = job.fetch;
    if (f === undefined) return;
    f.attempts++;
    f.assembler = new ChunkAssembler(f.checkpointId, f.sha256);
    this.deps.clock.clearTimeout(f.timer);
    f.timer = this.deps.clock.setTimeout(
      () => this.retryResume(job, `no complete checkpoint within ${this.config.fetchTimeoutMs} ms`),
      this.config.fetchTimeoutMs,
    );
    void this.send({
      type: 'checkpoint_request',
      jobId: job.spec.jobId,
      epoch: job.epoch,
      checkpointId: f.checkpointId,
    });
  }

  private retryResume(job: ActiveJob, why: string): void {
    const f = job.fetch;
    if (job.ended || f === undefined) return;
    if (f.attempts > this.config.transferRetries) {
      this.deps.clock.clearTimeout(f.timer);
      this.failJob(
        job,
        toWireError(
          new CheckpointTransferError(
            `cannot fetch checkpoint ${f.checkpointId} for ${job.spec.jobId} after ${f.attempts} tries: ${why}`,
          ),
        ),
      );
      return;
    }
    this.log.warn(
      { jobId: job.spec.jobId, checkpointId: f.checkpointId, attempt: f.attempts },
      `asking for the checkpoint again: ${why}`,
    );
    this.requestResumeCheckpoint(job);
  }

  private onChunk(chunk: CheckpointChunk): void {
    const job = this.job;
    const f = job?.fetch;
    if (
      job === undefined ||
      f === undefined ||
      job.phase !== 'fetching' ||
      chunk.jobId !== job.spec.jobId ||
      chunk.epoch !== job.epoch ||
      chunk.checkpointId !== f.checkpointId
    ) {
      this.log.debug(
        { jobId: chunk.jobId, epoch: chunk.epoch, checkpointId: chunk.checkpointId },
        'checkpoint chunk we did not ask for; ignored',
      );
      return;
    }
    let result;
    try {
      result = f.assembler.add(chunk);
    } catch (error) {
      this.retryResume(job, (error as Error).message);
      return;
    }
    if (result.kind === 'incomplete') return;
    this.deps.clock.clearTimeout(f.timer);
    job.fetch = undefined;
    job.phase = 'training';
    job.step = result.step;
    this.log.info(
      { jobId: job.spec.jobId, step: result.step, bytes: result.data.byteLength },
      'resume checkpoint verified',
    );
    this.launch(job, result.data);
  }

  // -------------------------------------------------------------------------------------------
  // The worker

  private launch(job: ActiveJob, resumeFrom: Uint8Array | undefined): void {
    let handle: JobHandle | undefined;
    const isCurrent = (): boolean => this.job === job && !job.ended && (handle === undefined || job.handle === handle);
    try {
      handle = this.deps.runner.start(
        {
          workloadModule: this.config.workloadModule,
          spec: job.spec,
          sliceSteps: this.config.sliceSteps,
          ...(this.config.requestedBackend === undefined ? {} : { backend: this.config.requestedBackend }),
          ...(resumeFrom === undefined ? {} : { resumeFrom }),
        },
        {
          onEvent: (event) => {
            if (!isCurrent()) return;
            try {
              this.onWorkerEvent(job, event);
            } catch (error) {
              this.log.error({ err: error, event: event.type }, `failed to handle worker event ${event.type}`);
            }
          },
          onExit: (error) => {
            if (!isCurrent()) return;
            // A clean exit after the evaluation is the normal end; anything else lost the job.
            if (error === undefined && job.evaluation !== undefined) return;
            this.failJob(job, toWireError(error ?? new WorkerCrashedError('training worker ended without a result')));
          },
        },
      );
      job.handle = handle;
    } catch (error) {
      this.failJob(
        job,
        toWireError(
          new WorkerCrashedError(`cannot start the training worker: ${(error as Error).message}`, { cause: error }),
        ),
      );
    }
  }

  private onWorkerEvent(job: ActiveJob, event: FromWorker): void {
    switch (event.type) {
      case 'started':
        job.step = event.step;
        this.log.info(
          { jobId: job.spec.jobId, backend: event.backend, step: event.step, parameters: event.parameterCount },
          'training started',
        );
        if (job.resumeStep !== undefined && event.step !== job.resumeStep) {
          this.log.warn(
            { expected: job.resumeStep, got: event.step },
            'workload resumed at another step than the checkpoint announced',
          );
        }
        return;
      case 'metrics': {
        const last = event.points[event.points.length - 1];
        if (last !== undefined) job.step = last.step;
        this.metrics.push(event.points);
        if (this.metrics.size >= this.config.metricsBatch) this.flushMetrics(false);
        else this.armFlushTimer();
        return;
      }
      case 'checkpoint':
        if (event.requestId !== undefined) {
          const waiter = job.checkpointWaiters.get(event.requestId);
          job.checkpointWaiters.delete(event.requestId);
          waiter?.(event.step, event.data);
          return;
        }
        job.nextPeriodic = { step: event.step, data: event.data };
        this.pumpPeriodic(job);
        return;
      case 'final':
        job.phase = 'finishing';
        job.step = event.step;
        this.upload(job, 'final', event.step, event.data, (ok) => {
          if (job.ended) return;
          if (!ok) {
            this.failJob(
              job,
              toWireError(new CheckpointTransferError(`the final model of ${job.spec.jobId} was not acknowledged`)),
            );
            return;
          }
          job.finalAcked = true;
          this.maybeSendResult(job);
        });
        return;
      case 'evaluation':
        job.evaluation = event.evaluation;
        this.maybeSendResult(job);
        return;
      case 'failed':
        this.failJob(job, event.error);
        return;
      case 'log':
        this.log.info({ jobId: job.spec.jobId, worker: true }, event.line);
        return;
      case 'stopped':
        return;
    }
  }

  private maybeSendResult(job: ActiveJob): void {
    if (!job.finalAcked || job.evaluation === undefined || job.ended) return;
    this.flushMetrics(true);
    void this.send({ type: 'job_result', jobId: job.spec.jobId, epoch: job.epoch, evaluation: job.evaluation });
    this.log.info(
      { jobId: job.spec.jobId, epoch: job.epoch, steps: job.evaluation.steps, exactMatch: job.evaluation.exactMatch },
      `finished ${job.spec.jobId}`,
    );
    this.endJob(job);
    this.sendHeartbeat();
  }

  private failJob(job: ActiveJob, error: WireError): void {
    if (job.ended) return;
    this.flushMetrics(true);
    void this.send({ type: 'job_failed', jobId: job.spec.jobId, epoch: job.epoch, error });
    this.log.error(
      { jobId: job.spec.jobId, epoch: job.epoch, error },
      `job ${job.spec.jobId} failed: ${error.message}`,
    );
    this.endJob(job);
    this.sendHeartbeat();
  }

  /** Stop the job's worker and forget it, without telling the coordinator (it told us, or forgot us). */
  private abandonJob(why: string): void {
    const job = this.job;
    if (job === undefined) return;
    this.log.info({ jobId: job.spec.jobId, epoch: job.epoch }, `abandoning ${job.spec.jobId}: ${why}`);
    this.metrics.clear();
    this.endJob(job);
  }

  private endJob(job: ActiveJob): void {
    job.ended = true;
    this.deps.clock.clearTimeout(job.fetch?.timer);
    for (const u of job.uploads.values()) this.deps.clock.clearTimeout(u.timer);
    job.uploads.clear();
    job.checkpointWaiters.clear();
    for (const listener of job.endListeners.splice(0)) listener();
    const handle = job.handle;
    job.handle = undefined;
    if (handle !== undefined) {
      handle
        .terminate()
        .catch((error: unknown) => this.log.warn({ err: error }, 'terminating the training worker failed'));
    }
    if (this.job === job) this.job = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Uploads: chunks up, wait for checkpoint_ack, send again on ok:false or silence (bounded)

  private pumpPeriodic(job: ActiveJob): void {
    if (job.periodicInFlight || job.ended) return;
    // While the coordinator is away only the newest checkpoint is kept; megabytes of chunks queued in the socket
    // would all land on whoever answers next. heard() pumps again when it is back.
    if (!this.coordinatorReachable()) return;
    const next = job.nextPeriodic;
    if (next === undefined) return;
    job.nextPeriodic = undefined;
    job.periodicInFlight = true;
    this.upload(job, 'checkpoint', next.step, next.data, () => {
      job.periodicInFlight = false;
      this.pumpPeriodic(job);
    });
  }

  private upload(
    job: ActiveJob,
    kind: Upload['kind'],
    step: number,
    data: Uint8Array,
    done: (ok: boolean) => void,
  ): Upload {
    let settled = false;
    const u: Upload = {
      checkpointId: newCheckpointId(),
      kind,
      step,
      data,
      attempts: 0,
      timer: undefined,
      settle: (ok) => {
        if (settled) return;
        settled = true;
        this.deps.clock.clearTimeout(u.timer);
        job.uploads.delete(u.checkpointId);
        done(ok);
      },
    };
    job.uploads.set(u.checkpointId, u);
    this.sendUpload(job, u);
    return u;
  }

  private sendUpload(job: ActiveJob, u: Upload): void {
    u.attempts++;
    this.deps.clock.clearTimeout(u.timer);
    u.timer = this.deps.clock.setTimeout(
      () => this.retryUpload(job, u, `no checkpoint_ack within ${this.config.ackTimeoutMs} ms`),
      this.config.ackTimeoutMs,
    );
    const chunks = chunkBlob(
      { jobId: job.spec.jobId, epoch: job.epoch, checkpointId: u.checkpointId, kind: u.kind, step: u.step },
      u.data,
      this.config.chunkBytes,
    );
    for (const chunk of chunks) void this.send(chunk);
    this.log.debug(
      {
        jobId: job.spec.jobId,
        checkpointId: u.checkpointId,
        kind: u.kind,
        step: u.step,
        bytes: u.data.byteLength,
        chunks: chunks.length,
        attempt: u.attempts,
      },
      'uploading',
    );
  }

  private retryUpload(job: ActiveJob, u: Upload, why: string): void {
    if (job.ended || !job.uploads.has(u.checkpointId)) return;
    if (u.attempts > this.config.transferRetries) {
      this.log.error(
        { jobId: job.spec.jobId, checkpointId: u.checkpointId, kind: u.kind, attempts: u.attempts },
        `giving up on ${u.kind} upload: ${why}`,
      );
      u.settle(false);
      return;
    }
    this.log.warn(
      { jobId: job.spec.jobId, checkpointId: u.checkpointId, kind: u.kind, attempt: u.attempts },
      `uploading again: ${why}`,
    );
    this.sendUpload(job, u);
  }

  private onAck(
    jobId: string,
    epoch: number,
    checkpointId: CheckpointId,
    ok: boolean,
    reason: string | undefined,
  ): void {
    const job = this.job;
    const u = job?.uploads.get(checkpointId);
    if (job === undefined || u === undefined || job.spec.jobId !== jobId || job.epoch !== epoch) {
      this.log.debug({ jobId, epoch, checkpointId }, 'checkpoint_ack for no upload of ours; ignored');
      return;
    }
    if (ok) {
      this.log.info({ jobId, checkpointId, kind: u.kind, step: u.step }, `${u.kind} acknowledged`);
      u.settle(true);
    } else {
      this.retryUpload(job, u, `refused: ${reason ?? 'no reason given'}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Outbound

  /** Queue a message; the promise says whether it left (it never rejects). */
  private send(message: AgentToCoordinator, droppable = false): Promise<boolean> {
    if (this.lifecycle === 'stopped') return Promise.resolve(false);
    // Heartbeats pile up uselessly behind a blocked socket; job messages must not be dropped.
    if (droppable && this.pendingSends > MAX_PENDING_SENDS) return Promise.resolve(false);
    this.pendingSends++;
    // Straight to the transport, which keeps the order and packs messages that queue up into shared frames.
    const sent = this.deps.transport
      .send(message)
      .then(
        () => true,
        (error: unknown) => {
          this.log.warn(
            { err: error, type: message.type },
            `sending ${message.type} failed: ${(error as Error).message}`,
          );
          return false;
        },
      )
      .finally(() => {
        this.pendingSends--;
      });
    this.lastSend = sent;
    return sent;
  }

  private sendHello(): void {
    const hello: AgentToCoordinator = {
      type: 'hello',
      version: PROTOCOL_VERSION,
      agentId: this.agentIdNow,
      host: this.config.host,
      pid: this.config.pid,
      backend: this.config.backend,
      devices: this.config.devices,
      ...(this.config.launcherId === undefined ? {} : { launcherId: this.config.launcherId }),
    };
    let left = false;
    void this.send(hello).then((ok) => (left = ok));
    this.armHelloRetry(() => left);
  }

  /**
   * The hello may have reached a coordinator that then died; say it again until welcomed. Only once the last one
   * has left the socket: hellos queued while the coordinator is unreachable would all arrive together on connect,
   * and a coordinator takes a repeated hello as a restarted agent.
   */
  private armHelloRetry(left: () => boolean): void {
    this.deps.clock.clearTimeout(this.helloTimer);
    this.helloTimer = this.deps.clock.setTimeout(() => {
      if (this.welcomed || this.lifecycle === 'stopped') return;
      if (left()) this.sendHello();
      else this.armHelloRetry(left);
    }, this.config.helloRetryMs);
  }

  private sendHeartbeat(): void {
    if (!this.welcomed || this.lifecycle === 'stopped') return;
    const j = this.job;
    void this.send(
      {
        type: 'heartbeat',
        agentId: this.agentIdNow,
        seq: ++this.heartbeatSeq,
        time: this.deps.clock.now(),
        state: this.lifecycle === 'draining' ? 'draining' : j === undefined ? 'idle' : 'busy',
        ...(j === undefined ? {} : { jobId: j.spec.jobId, epoch: j.epoch, step: j.step }),
      },
      true,
    );
  }

  private armFlushTimer(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = this.deps.clock.setTimeout(() => {
      this.flushTimer = undefined;
      this.flushMetrics(false);
    }, this.config.metricsFlushMs);
  }

  /** Send buffered points in batches; unless forced, only while the coordinator is reachable. */
  private flushMetrics(force: boolean): void {
    this.deps.clock.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const job = this.job;
    if (job === undefined || this.metrics.size === 0) return;
    if (!force && !this.coordinatorReachable()) {
      // Keep them (bounded, oldest dropped) and look again later.
      this.armFlushTimer();
      return;
    }
    while (this.metrics.size > 0) {
      void this.send(metricsMessage(job.spec.jobId, job.epoch, this.metrics.take(this.config.metricsBatch)));
    }
  }

  // -------------------------------------------------------------------------------------------
  // Leaving

  private armDeathTimer(): void {
    this.deps.clock.clearTimeout(this.deathTimer);
    const silentFor = this.deps.clock.now() - this.lastHeardAt;
    this.deathTimer = this.deps.clock.setTimeout(
      () => {
        if (this.lifecycle === 'stopped') return;
        const silent = this.deps.clock.now() - this.lastHeardAt;
        if (silent >= this.config.deathTimeoutMs) {
          this.log.error(
            { silentMs: silent, deathTimeoutMs: this.config.deathTimeoutMs },
            'coordinator gone: nothing heard within the death timeout',
          );
          this.finish({
            code: AGENT_EXIT.coordinatorGone,
            reason: `nothing heard from the coordinator for ${silent} ms`,
          });
        } else {
          this.armDeathTimer();
        }
      },
      Math.max(1, this.config.deathTimeoutMs - silentFor),
    );
  }

  /**
   * Leave cleanly: no new work; with checkpoint, the running job is checkpointed and uploaded first (bounded by
   * drainTimeoutMs); then the worker is stopped, bye sent, and the agent exits 0.
   */
  async drain(reason: string, checkpoint: boolean): Promise<AgentExit> {
    if (this.lifecycle === 'draining' || this.lifecycle === 'stopped') return this.exited;
    this.lifecycle = 'draining';
    this.log.info({ reason, checkpoint }, 'draining');
    this.sendHeartbeat();
    const job = this.job;
    if (checkpoint && job !== undefined && this.welcomed && (job.phase === 'training' || job.phase === 'finishing')) {
      // Bounded by drainTimeoutMs whatever happens: a PBS walltime kill follows SIGTERM within seconds.
      let timer: TimerHandle | undefined;
      const outcome = await new Promise<'acked' | 'refused' | 'ended' | 'timeout'>((resolve) => {
        timer = this.deps.clock.setTimeout(() => resolve('timeout'), this.config.drainTimeoutMs);
        job.endListeners.push(() => resolve('ended'));
        // Training: checkpoint now. Finishing (final model up, evaluating): let the result go out instead.
        if (job.phase === 'training' && job.handle !== undefined) {
          const requestId = this.nextRequestId++;
          job.checkpointWaiters.set(requestId, (step, data) => {
            this.upload(job, 'checkpoint', step, data, (ok) => resolve(ok ? 'acked' : 'refused'));
          });
          job.handle.requestCheckpoint(requestId);
        }
      });
      this.deps.clock.clearTimeout(timer);
      this.log.info(
        { jobId: job.spec.jobId, outcome },
        `drain: ${outcome === 'acked' ? 'drain checkpoint acknowledged' : outcome === 'ended' ? 'the job ended' : `no acknowledged checkpoint (${outcome})`}`,
      );
    }
    if (this.job !== undefined) this.abandonJob(`draining: ${reason}`);
    if (this.welcomed) void this.send({ type: 'bye', agentId: this.agentIdNow, reason });
    this.finish({ code: AGENT_EXIT.ok, reason });
    return this.exited;
  }

  /** Stop everything now (worker, timers, transport) and resolve `exited`. Idempotent. */
  private finish(exit: AgentExit): void {
    if (this.exitValue !== undefined) return;
    this.exitValue = exit;
    const { clock } = this.deps;
    clock.clearInterval(this.heartbeatTimer);
    clock.clearTimeout(this.helloTimer);
    clock.clearTimeout(this.deathTimer);
    clock.clearTimeout(this.flushTimer);
    this.heartbeatTimer = this.helloTimer = this.deathTimer = this.flushTimer = undefined;
    const handle = this.job?.handle;
    if (this.job !== undefined) this.endJob(this.job);
    const chain = this.lastSend;
    this.lifecycle = 'stopped';
    void (async () => {
      // Let queued messages (bye, job_failed) leave, but never wait on a socket with no peer for long.
      await boundedWait(chain, 2_000);
      if (this.config.closeGraceMs > 0) await boundedWait(new Promise(() => undefined), this.config.closeGraceMs);
      await handle?.terminate().catch(() => undefined);
      await this.deps.transport
        .close()
        .catch((error: unknown) => this.log.warn({ err: error }, 'closing the transport failed'));
      this.log.info({ code: exit.code, reason: exit.reason }, 'agent stopped');
      this.exitResolve(exit);
    })();
  }

  /** Stop at once (e.g. a second SIGINT), without draining. */
  stop(reason: string, code: AgentExitCode = AGENT_EXIT.ok): Promise<AgentExit> {
    this.finish({ code, reason });
    return this.exited;
  }
}

/** Wait for p, but at most ms of wall-clock time (bounds shutdown whatever the injected clock does). */
async function boundedWait(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Without asking nvidia-smi (options compile synchronously); runAgent refines it with detectDevices. */
export function defaultDevices(backend: string): DeviceInfo[] {
  return backend === 'tensorflow-gpu' ? [{ kind: 'gpu', name: 'cuda' }, cpuDevice()] : [cpuDevice()];
}

// ---------------------------------------------------------------------------------------------
// runAgent: compile options, connect, run until the agent leaves; resolves with the exit code.

export interface AgentOptions {
  /** The coordinator's ROUTER address, tcp://host:port. */
  coordinator: string;
  agentId?: string;
  /** Force a TensorFlow.js backend in the worker; otherwise the best that loads is picked there. */
  backend?: BackendName;
  /** Exit (code 3) after hearing nothing from the coordinator for this long. Default 60 s. */
  deathTimeoutMs?: number;
  /** pino lines go here; stdout otherwise. */
  logFile?: string;
  /** Path or URL of a module exporting createWorkload; default src/train/tf-workload.ts (tests pass a fake). */
  workloadModule?: string;
  curve?: { serverPublicKey: string; publicKey: string; secretKey: string };
  /** Metric points kept while the coordinator is away (oldest dropped beyond). Default 100,000. */
  maxMetricBuffer?: number;
  /** The scheduler's id for this agent (PBS/Slurm job id). */
  launcherId?: string;
  /** Injection for tests; runAgent connects a ZeroMQ DEALER when absent. */
  transport?: ClientTransport;
  clock?: Clock;
  runner?: JobRunner;
  logger?: Logger;
  /** Install SIGTERM/SIGINT handlers that drain the agent (default true). */
  handleSignals?: boolean;
  /** Bound on the SIGTERM checkpoint upload. Default 5 s. */
  drainTimeoutMs?: number;
  sliceSteps?: number;
  /**
   * Learn the backend for hello by running the workers' backend selection once in a throw-away worker (~2 s).
   * Default: when no backend is forced and the workload is the real one; otherwise hello says the forced one or 'auto'.
   */
  probeBackend?: boolean;
  /** Where the reason goes when the agent is rejected or fails fatally (one line). Default process.stderr. */
  stderr?: { write(line: string): unknown };
}

const DEFAULT_WORKLOAD = new URL('../src/train/tf-workload.ts', import.meta.url).href;

function moduleUrl(spec: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)) return spec; // already a URL (not C:\)
  return pathToFileURL(resolvePath(spec)).href;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0)
    throw new AgentConfigError(`${name} must be a positive number, got ${value}`);
  return value;
}

/** Validate and fill defaults once; only the compiled AgentConfig travels further. */
export function compileAgentOptions(options: AgentOptions): AgentConfig {
  if (!/^(tcp|ipc|inproc|mem):\/\/\S+$/.test(options.coordinator)) {
    throw new AgentConfigError(`coordinator: expected an address like tcp://host:port, got '${options.coordinator}'`);
  }
  if (
    options.backend !== undefined &&
    !(['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const).includes(options.backend)
  ) {
    throw new AgentConfigError(
      `backend: expected tensorflow-gpu, tensorflow, wasm or cpu, got '${String(options.backend)}'`,
    );
  }
  const backend = options.backend ?? 'auto';
  return {
    agentId: (options.agentId ?? newAgentId()) as AgentId,
    host: os.hostname(),
    pid: process.pid,
    backend,
    ...(options.backend === undefined ? {} : { requestedBackend: options.backend }),
    devices: defaultDevices(backend),
    ...(options.launcherId === undefined ? {} : { launcherId: options.launcherId }),
    workloadModule: options.workloadModule === undefined ? DEFAULT_WORKLOAD : moduleUrl(options.workloadModule),
    deathTimeoutMs: positive('deathTimeoutMs', options.deathTimeoutMs, AGENT_DEFAULTS.deathTimeoutMs),
    maxMetricBuffer: Math.floor(positive('maxMetricBuffer', options.maxMetricBuffer, AGENT_DEFAULTS.maxMetricBuffer)),
    metricsFlushMs: AGENT_DEFAULTS.metricsFlushMs,
    metricsBatch: AGENT_DEFAULTS.metricsBatch,
    helloRetryMs: AGENT_DEFAULTS.helloRetryMs,
    ackTimeoutMs: AGENT_DEFAULTS.ackTimeoutMs,
    fetchTimeoutMs: AGENT_DEFAULTS.fetchTimeoutMs,
    drainTimeoutMs: positive('drainTimeoutMs', options.drainTimeoutMs, AGENT_DEFAULTS.drainTimeoutMs),
    sliceSteps: Math.floor(positive('sliceSteps', options.sliceSteps, AGENT_DEFAULTS.sliceSteps)),
    transferRetries: AGENT_DEFAULTS.transferRetries,
    chunkBytes: AGENT_DEFAULTS.chunkBytes,
    closeGraceMs: AGENT_DEFAULTS.closeGraceMs,
  };
}

function makeLogger(options: AgentOptions): Logger {
  if (options.logger !== undefined) return options.logger;
  const base = { component: 'agent', host: os.hostname(), pid: process.pid };
  if (options.logFile === undefined) return pino({ base });
  // Synchronous writes: the agent's last lines (why it exited) must reach the file before process exit.
  return pino({ base }, pino.destination({ dest: options.logFile, mkdir: true, sync: true }));
}

/**
 * Run one agent until it leaves. Resolves with the exit code: 0 drained (shutdown, SIGTERM/SIGINT), 2 rejected
 * (protocol version), 3 coordinator gone (death timeout), 1 fatal (bad options, cannot connect).
 */
export async function runAgent(options: AgentOptions): Promise<AgentExitCode> {
  const stderr = options.stderr ?? process.stderr;
  let config: AgentConfig;
  try {
    config = compileAgentOptions(options);
  } catch (error) {
    stderr.write(`pe-arena agent: ${(error as Error).message}\n`);
    return AGENT_EXIT.fatal;
  }
  try {
    return await runCompiled(options, config, stderr);
  } catch (error) {
    // A bug, not bad input: still one clear line, and an exit code the launcher can report.
    stderr.write(`pe-arena agent: fatal: ${(error as Error).stack ?? String(error)}`.split('\n')[0] + '\n');
    return AGENT_EXIT.fatal;
  }
}

async function runCompiled(
  options: AgentOptions,
  compiled: AgentConfig,
  stderr: { write(line: string): unknown },
): Promise<AgentExitCode> {
  let config = compiled;
  const baseLogger = makeLogger(options);
  const logger = baseLogger.child({ agentId: config.agentId });
  if (options.probeBackend ?? (options.backend === undefined && options.workloadModule === undefined)) {
    const probe = await probeBackend();
    if (probe.ok) {
      config = { ...config, backend: probe.name, devices: defaultDevices(probe.name) };
      logger.info({ backend: probe.name, tried: probe.tried }, `backend probe: workers will run on ${probe.name}`);
    } else {
      logger.warn({ reason: probe.reason }, `backend probe failed; hello says '${config.backend}'`);
    }
  }
  if (config.backend === 'tensorflow-gpu') config = { ...config, devices: await detectDevices(config.backend) };
  const clock = options.clock ?? systemClock;
  const runner =
    options.runner ??
    createWorkerRunner({
      log: (line) => logger.info({ worker: true }, line),
      warm: {
        workloadModule: config.workloadModule,
        ...(config.requestedBackend === undefined ? {} : { backend: config.requestedBackend }),
      },
    });
  let transport = options.transport;
  if (transport === undefined) {
    try {
      const { connectClient } = await import('../protocol/zmq-transport.ts');
      transport = await connectClient({
        address: options.coordinator,
        ...(options.curve === undefined ? {} : { curve: options.curve }),
        reconnectIntervalMs: 100,
        reconnectMaxIntervalMs: 5_000,
        log: (line) => logger.info({ transport: true }, line),
      });
    } catch (error) {
      logger.fatal({ err: error }, 'cannot connect');
      stderr.write(`pe-arena agent: cannot connect to ${options.coordinator}: ${(error as Error).message}\n`);
      return AGENT_EXIT.fatal;
    }
  }
  const agent = new NodeAgent(config, { transport, clock, runner, logger: baseLogger });
  logger.info(
    { coordinator: options.coordinator, backend: config.backend, workloadModule: config.workloadModule },
    'agent starting',
  );

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    logger.info({ signal }, signals === 1 ? 'signal: checkpointing and draining' : 'second signal: stopping now');
    if (signals === 1) void agent.drain(signal, true);
    else void agent.stop(`second ${signal}`);
  };
  if (options.handleSignals ?? true) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  // A walltime from the batch scheduler drains the agent a margin before the allocation ends. Job scripts that
  // preload walltime.ts drain through the SIGTERM handler above instead, so arm it here only without that.
  const walltime =
    (options.handleSignals ?? true) && process.env[WALLTIME_ENV.preload] !== '1'
      ? armWalltimeDrain({ onDrain: (reason) => void agent.drain(reason, true) })
      : undefined;
  if (walltime?.deadline !== undefined) {
    logger.info(
      { drainAt: new Date(walltime.deadline.drainAt).toISOString(), source: walltime.deadline.source },
      'walltime known: will checkpoint and drain before the allocation ends',
    );
  }
  let exit: AgentExit;
  try {
    // Load TensorFlow.js in the first job's worker now, while the agent says hello and waits for work.
    runner.prewarm?.();
    agent.start();
    exit = await agent.exited;
  } finally {
    await runner.close?.();
    walltime?.cancel();
    if (options.handleSignals ?? true) {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }
  if (exit.code === AGENT_EXIT.rejected) stderr.write(`pe-arena agent: rejected by the coordinator: ${exit.reason}\n`);
  else if (exit.code === AGENT_EXIT.coordinatorGone) stderr.write(`pe-arena agent: coordinator gone: ${exit.reason}\n`);
  return exit.code;
}
