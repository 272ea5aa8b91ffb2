// One assigned job, from assign to its end: pull the resume checkpoint first when there is one (resume-fetch.ts),
// train in the runner's worker, hand metric points to the agent, upload checkpoints and the final model
// (checkpoint-upload.ts), then send job_result once the final model is acknowledged and the evaluation is in,
// or job_failed. The agent owns the connection; a session only speaks through its host.
import type { Logger } from 'pino';
import type {
  AgentToCoordinator,
  Assign,
  CheckpointChunk,
  CheckpointId,
  Evaluation,
  JobSpec,
  MetricPoint,
  WireError,
} from '../protocol/messages.ts';
import type { Clock } from '../protocol/clock.ts';
import { toWireError } from '../protocol/errors.ts';
import type { AgentConfig } from './agent-config.ts';
import { CheckpointUploads } from './checkpoint-upload.ts';
import type { JobHandle, JobRunner } from './job-runner.ts';
import { ResumeFetch } from './resume-fetch.ts';
import type { FromWorker } from './worker-protocol.ts';
import { CheckpointTransferError, WorkerCrashedError } from './errors.ts';
import { GangLink, type GangPeerConfig } from './gang-link.ts';

export type JobPhase = 'fetching' | 'training' | 'finishing';

/** What a drain's checkpoint came to (a timeout is the caller's, see NodeAgent.drain). */
export type DrainCheckpoint = 'acked' | 'refused' | 'ended';

export interface JobSessionHost {
  clock: Clock;
  runner: JobRunner;
  config: AgentConfig;
  log: Logger;
  send(message: AgentToCoordinator): void;
  /** Whether the coordinator was heard from lately (periodic checkpoints wait while it is away). */
  reachable(): boolean;
  /** Points from the worker, for the agent to buffer and stream. */
  metrics(points: readonly MetricPoint[]): void;
  /** Send every buffered point now: job_result and job_failed must come after the job's last metrics. */
  flushMetrics(): void;
  /** The session is over; `reported` when it told the coordinator so (job_result or job_failed). */
  ended(session: JobSession, reported: boolean): void;
  /** Where this agent's gang ranks bind and how peers are admitted. */
  gangPeers: GangPeerConfig;
}

export class JobSession {
  readonly spec: JobSpec;
  readonly epoch: number;
  private phaseNow: JobPhase;
  private stepNow: number;
  private readonly resumeStep: number | undefined;
  /** Set while the phase is 'fetching'. */
  private fetch: ResumeFetch | undefined;
  private handle: JobHandle | undefined;
  private readonly uploads: CheckpointUploads;
  private finalAcked = false;
  private evaluation: Evaluation | undefined;
  private nextRequestId = 1;
  /** Resolvers waiting for a requested checkpoint (drain on SIGTERM). */
  private readonly checkpointWaiters = new Map<number, (step: number, data: Uint8Array) => void>();
  /** Called once when the job ends for any reason (a drain waiting on it stops waiting). */
  private readonly endListeners: (() => void)[] = [];
  private over = false;
  /** The step the worker stopped at after a drain's checkpoint (it trains no further). */
  private stoppedAt: number | undefined;
  private terminated: Promise<void> = Promise.resolve();
  /** Set for a seat in a data-parallel gang. */
  readonly gang: GangLink | undefined;

  constructor(
    { job: spec, epoch, resumeFrom, gang }: Assign,
    private readonly host: JobSessionHost,
  ) {
    this.spec = spec;
    this.epoch = epoch;
    this.phaseNow = resumeFrom === undefined ? 'training' : 'fetching';
    this.stepNow = resumeFrom?.step ?? 0;
    this.resumeStep = resumeFrom?.step;
    const { clock, log, config } = host;
    const { ackTimeoutMs, fetchTimeoutMs, transferRetries, chunkBytes } = config;
    const send = (message: AgentToCoordinator): void => host.send(message);
    const header = { jobId: spec.jobId, epoch };
    this.gang =
      gang === undefined
        ? undefined
        : new GangLink({
            jobId: spec.jobId,
            epoch,
            log,
            peers: host.gangPeers,
            send,
            toWorker: (message, transfer) => this.handle?.send(message, transfer),
            stream: (points) => host.metrics(points),
            flushMetrics: () => host.flushMetrics(),
          });
    this.uploads = new CheckpointUploads(header, {
      clock,
      log,
      send,
      reachable: () => host.reachable(),
      ackTimeoutMs,
      transferRetries,
      chunkBytes,
    });
    if (resumeFrom !== undefined) {
      this.fetch = new ResumeFetch(
        header,
        resumeFrom,
        { clock, log, send, fetchTimeoutMs, transferRetries },
        {
          onVerified: (data, step) => {
            this.fetch = undefined;
            this.phaseNow = 'training';
            this.stepNow = step;
            log.info({ jobId: spec.jobId, step, bytes: data.byteLength }, 'resume checkpoint verified');
            this.launch(data);
          },
          onGiveUp: (error) => this.fail(toWireError(error)),
        },
      );
    }
  }

  get phase(): JobPhase {
    return this.phaseNow;
  }

  get step(): number {
    return this.stepNow;
  }

  get ended(): boolean {
    return this.over;
  }

  /** Pull the resume checkpoint, or start training at once. */
  start(): void {
    if (this.fetch !== undefined) this.fetch.request();
    else this.launch(undefined);
  }

  /** A chunk for this job and epoch; false when it is none we asked for. */
  onChunk(chunk: CheckpointChunk): boolean {
    const f = this.fetch;
    if (f === undefined || this.phaseNow !== 'fetching' || chunk.checkpointId !== f.checkpointId) return false;
    f.onChunk(chunk);
    return true;
  }

  /** The coordinator could not serve our checkpoint_request: ask again now (bounded) rather than after a timeout. */
  onFetchRefused(why: string): void {
    if (this.phaseNow === 'fetching') this.fetch?.retry(why);
  }

  /** A checkpoint_ack for this job and epoch; false when it is for none of our uploads. */
  onAck(checkpointId: CheckpointId, ok: boolean, reason: string | undefined): boolean {
    return this.uploads.onAck(checkpointId, ok, reason);
  }

  /** The coordinator is back: send the newest periodic checkpoint that waited. */
  coordinatorBack(): void {
    if (!this.over) this.uploads.pumpPeriodic();
  }

  /**
   * For a drain: training, checkpoint at the current step (the next slice boundary), stop training and upload it;
   * finishing (final model up, evaluating), let the result go out instead. Settles when acknowledged, refused, or the job ended; the caller bounds the wait.
   */
  checkpointForDrain(): Promise<DrainCheckpoint> {
    return new Promise((resolve) => {
      if (this.over) return resolve('ended');
      this.endListeners.push(() => resolve('ended'));
      // A gang's rank 0 checkpoints for the gang (every replica holds the same state); the others just leave.
      if (this.gang !== undefined && this.gang.rank !== 0) return resolve('ended');
      if (this.phaseNow === 'training' && this.handle !== undefined) {
        const requestId = this.nextRequestId++;
        // The worker posted every metric up to this step before the checkpoint, and they go up before it (see
        // 'checkpoint' below), so the run's metrics end exactly where the resumed job starts.
        this.checkpointWaiters.set(requestId, (step, data) => {
          this.uploads.upload('checkpoint', step, data, (ok) => resolve(ok ? 'acked' : 'refused'));
        });
        // The worker stops after this checkpoint: a step trained past it would be trained again on resume.
        this.handle.requestCheckpoint(requestId, true);
      }
    });
  }

  /** Report the job failed (job_failed after its metrics), then end it. */
  fail(error: WireError): void {
    if (this.over) return;
    this.host.flushMetrics();
    this.host.send({ type: 'job_failed', jobId: this.spec.jobId, epoch: this.epoch, error });
    this.host.log.error(
      { jobId: this.spec.jobId, epoch: this.epoch, error },
      `job ${this.spec.jobId} failed: ${error.message}`,
    );
    this.end(true);
  }

  /**
   * Stop the worker and every transfer, without telling the coordinator (it told us, forgot us, or we leave).
   * Resolves once the worker is gone; never rejects. Idempotent.
   */
  abandon(): Promise<void> {
    if (!this.over) this.end(false);
    return this.terminated;
  }

  private end(reported: boolean): void {
    this.over = true;
    this.fetch?.end();
    this.uploads.cancel();
    this.checkpointWaiters.clear();
    this.gang?.close();
    for (const listener of this.endListeners.splice(0)) listener();
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) {
      this.terminated = handle
        .terminate()
        .catch((error: unknown) => this.host.log.warn({ err: error }, 'terminating the training worker failed'));
    }
    this.host.ended(this, reported);
  }

  private launch(resumeFrom: Uint8Array | undefined): void {
    const { runner, config } = this.host;
    let handle: JobHandle | undefined;
    const isCurrent = (): boolean => !this.over && (handle === undefined || this.handle === handle);
    try {
      handle = runner.start(
        {
          workloadModule: config.workloadModule,
          spec: this.spec,
          sliceSteps: config.sliceSteps,
          ...(config.requestedBackend === undefined ? {} : { backend: config.requestedBackend }),
          ...(resumeFrom === undefined ? {} : { resumeFrom }),
          ...(this.gang === undefined ? {} : { gang: true }),
        },
        {
          onEvent: (event) => {
            if (!isCurrent()) return;
            try {
              this.onWorkerEvent(event);
            } catch (error) {
              this.host.log.error({ err: error, event: event.type }, `failed to handle worker event ${event.type}`);
            }
          },
          onExit: (error) => {
            if (!isCurrent()) return;
            // A clean exit after the evaluation is the normal end, and after a drain's stop the expected one;
            // anything else lost the job.
            if (error === undefined && (this.evaluation !== undefined || this.stoppedAt !== undefined)) return;
            this.fail(toWireError(error ?? new WorkerCrashedError('training worker ended without a result')));
          },
        },
      );
      this.handle = handle;
    } catch (error) {
      this.fail(
        toWireError(
          new WorkerCrashedError(`cannot start the training worker: ${(error as Error).message}`, { cause: error }),
        ),
      );
    }
  }

  private onWorkerEvent(event: FromWorker): void {
    const { log } = this.host;
    if (this.gang?.onWorkerEvent(event) === true) {
      // A rank other than 0 is done once its last step is summed; the worker ends by itself.
      if (event.type === 'gang_done') {
        this.stepNow = event.step;
        this.end(true);
      }
      return;
    }
    switch (event.type) {
      case 'started':
        this.stepNow = event.step;
        log.info(
          { jobId: this.spec.jobId, backend: event.backend, step: event.step, parameters: event.parameterCount },
          'training started',
        );
        if (this.resumeStep !== undefined && event.step !== this.resumeStep) {
          log.warn(
            { expected: this.resumeStep, got: event.step },
            'workload resumed at another step than the checkpoint announced',
          );
        }
        return;
      case 'metrics': {
        const last = event.points[event.points.length - 1];
        if (last !== undefined) this.stepNow = last.step;
        if (this.gang === undefined) this.host.metrics(event.points);
        else this.gang.onMetrics(event.points);
        return;
      }
      case 'checkpoint':
        // The metrics of the steps a checkpoint covers go first: a job that resumes from it re-sends only later
        // steps, so points still in the buffer when the agent dies would otherwise be lost for good.
        this.host.flushMetrics();
        if (event.requestId !== undefined) {
          const waiter = this.checkpointWaiters.get(event.requestId);
          this.checkpointWaiters.delete(event.requestId);
          waiter?.(event.step, event.data);
          return;
        }
        this.uploads.offerPeriodic(event.step, event.data);
        return;
      case 'final':
        this.gang?.trainingDone();
        this.phaseNow = 'finishing';
        this.stepNow = event.step;
        this.uploads.upload('final', event.step, event.data, (ok) => {
          if (this.over) return;
          if (!ok) {
            this.fail(
              toWireError(new CheckpointTransferError(`the final model of ${this.spec.jobId} was not acknowledged`)),
            );
            return;
          }
          this.finalAcked = true;
          this.maybeSendResult();
        });
        return;
      case 'evaluation':
        this.evaluation = event.evaluation;
        this.maybeSendResult();
        return;
      case 'failed':
        this.fail(event.error);
        return;
      case 'log':
        log.info({ jobId: this.spec.jobId, worker: true }, event.line);
        return;
      case 'stopped':
        // Only a drain's checkpoint stops the worker on its own; the agent ends the session once it is acknowledged.
        this.stoppedAt = event.step;
        log.info({ jobId: this.spec.jobId, step: event.step }, 'training stopped for the drain');
        return;
    }
  }

  private maybeSendResult(): void {
    const evaluation = this.evaluation;
    if (!this.finalAcked || evaluation === undefined || this.over) return;
    this.host.flushMetrics();
    this.host.send({ type: 'job_result', jobId: this.spec.jobId, epoch: this.epoch, evaluation });
    this.host.log.info(
      { jobId: this.spec.jobId, epoch: this.epoch, steps: evaluation.steps, exactMatch: evaluation.exactMatch },
      `finished ${this.spec.jobId}`,
    );
    this.end(true);
  }
}
