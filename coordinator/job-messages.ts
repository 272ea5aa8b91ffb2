// What agents say about their jobs, once fenced (current epoch, from the job's agent): metrics, checkpoint
// uploads and resume fetches, results and failures.
import { metricPoints } from '../protocol/metric-columns.ts';
import type { CheckpointChunk, CheckpointRequest, JobFailed, JobResult, Metrics } from '../protocol/messages.ts';
import { chunkBlob, MAX_CHUNK_BYTES } from '../protocol/checkpoint-chunks.ts';
import { toWireError } from '../protocol/errors.ts';
import type { ServerTransport } from '../protocol/transport.ts';
import { freeAgent } from './context.ts';
import type { AgentRecord, CoordinatorContext } from './context.ts';
import { displayJobId } from './experiment.ts';
import type { MetricsSink } from './metrics-sink.ts';

export class JobMessages {
  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly sink: MetricsSink,
    private readonly transport: ServerTransport,
    /** Fault injection for end-to-end tests: flip a byte in the first N checkpoint uploads. */
    private corruptUploads: number,
  ) {}

  onMetrics(m: Metrics): void {
    const { ctx } = this;
    const job = ctx.scheduler.get(m.jobId);
    const points = metricPoints(m);
    if (!job || points.length === 0) return;
    this.sink.write(m.jobId, m.epoch, points);
    const last = points.reduce((a, b) => (b.step > a.step ? b : a));
    if (last.step > (job.metricsStep ?? 0)) job.metricsStep = last.step;
    ctx.scheduler.progress(m.jobId, last.step, ctx.clock.now());
    if (Number.isFinite(last.loss)) job.loss = last.loss;
    if (Number.isFinite(last.tokensPerSecond)) job.tokensPerSecond = last.tokensPerSecond;
    const acc = [...points].reverse().find((p) => p.accuracy !== undefined)?.accuracy;
    if (acc !== undefined) job.accuracy = acc;
  }

  onChunk(agent: AgentRecord, chunk: CheckpointChunk): void {
    const { ctx } = this;
    if (this.corruptUploads > 0 && chunk.index === 0 && chunk.data.byteLength > 0) {
      this.corruptUploads--;
      chunk = { ...chunk, data: chunk.data.map((b, i) => (i === 0 ? b ^ 0xff : b)) };
      ctx.log.warn(
        { jobId: chunk.jobId, checkpointId: chunk.checkpointId },
        'fault injection: corrupted the first chunk of this upload',
      );
    }
    const outcome = ctx.store.accept(chunk);
    if (outcome.status === 'partial') return;
    const ack = {
      type: 'checkpoint_ack',
      jobId: chunk.jobId,
      epoch: chunk.epoch,
      checkpointId: chunk.checkpointId,
    } as const;
    if (outcome.status === 'rejected') {
      ctx.log.warn(
        { agentId: agent.agentId, jobId: chunk.jobId, checkpointId: chunk.checkpointId, reason: outcome.reason },
        `refused ${chunk.kind} upload for ${chunk.jobId} from ${agent.agentId}: ${outcome.reason}`,
      );
      ctx.emit(
        'checkpoint_refused',
        `refused ${chunk.kind} of ${displayJobId(chunk.jobId)} at step ${chunk.step}: ${outcome.reason}`,
        { jobId: chunk.jobId, agentId: agent.agentId },
      );
      ctx.outbox.send(agent.peer, { ...ack, ok: false, reason: outcome.reason });
      return;
    }
    ctx.outbox.record({
      type: 'checkpoint_acked',
      jobId: chunk.jobId,
      epoch: chunk.epoch,
      kind: outcome.kind,
      checkpoint: outcome.ref,
    });
    const job = ctx.scheduler.get(chunk.jobId);
    if (job) {
      if (outcome.kind === 'checkpoint') {
        job.checkpoints = ctx.store.prune(chunk.jobId, [...job.checkpoints, outcome.ref]);
        ctx.scheduler.progress(chunk.jobId, outcome.ref.step, ctx.clock.now());
      } else if (job.state !== 'evaluating') {
        ctx.scheduler.progress(chunk.jobId, outcome.ref.step, ctx.clock.now());
        job.state = 'evaluating';
        ctx.outbox.record({ type: 'job_evaluating', jobId: chunk.jobId, epoch: chunk.epoch });
      }
    }
    ctx.log.info(
      { agentId: agent.agentId, jobId: chunk.jobId, step: chunk.step, bytes: chunk.totalBytes, kind: outcome.kind },
      `stored ${outcome.kind} of ${chunk.jobId} at step ${chunk.step}`,
    );
    ctx.outbox.send(agent.peer, { ...ack, ok: true });
  }

  /** A resuming agent's fetch: the checkpoint streamed back in chunks, or an error it answers by asking again. */
  async onCheckpointRequest(agent: AgentRecord, req: CheckpointRequest): Promise<void> {
    const { ctx } = this;
    const job = ctx.scheduler.get(req.jobId);
    const ref = job?.checkpoints.find((c) => c.checkpointId === req.checkpointId);
    if (!job || !ref) {
      ctx.outbox.send(agent.peer, {
        type: 'error',
        error: {
          name: 'CheckpointNotFound',
          message: `no checkpoint ${req.checkpointId} for ${req.jobId}`,
          retryable: false,
        },
        context: 'checkpoint_request',
      });
      return;
    }
    let blob: Uint8Array;
    try {
      blob = ctx.store.read(ref);
    } catch (error) {
      ctx.log.error({ jobId: req.jobId, err: error }, `cannot read checkpoint ${ref.file}`);
      ctx.outbox.send(agent.peer, { type: 'error', error: toWireError(error), context: 'checkpoint_request' });
      return;
    }
    const header = {
      jobId: req.jobId,
      epoch: req.epoch,
      checkpointId: ref.checkpointId,
      kind: 'checkpoint',
      step: ref.step,
    } as const;
    const chunks = chunkBlob(header, blob, MAX_CHUNK_BYTES, ref.sha256);
    // Sent one after the other so a big checkpoint does not flood the socket's queue.
    for (const c of chunks) {
      if (ctx.lifecycle() === 'stopped') return;
      await this.transport
        .send(agent.peer, c)
        .catch((error: unknown) => ctx.log.warn({ err: error }, 'checkpoint send failed'));
    }
    ctx.log.info(
      { agentId: agent.agentId, jobId: req.jobId, step: ref.step, bytes: ref.totalBytes },
      `streamed checkpoint of ${req.jobId} at step ${ref.step} to ${agent.agentId}`,
    );
  }

  onResult(agent: AgentRecord, result: JobResult): void {
    const { ctx } = this;
    const jobId = result.jobId;
    this.sink.writeEvaluation(jobId, result.evaluation);
    this.sink.flush();
    ctx.outbox.record({ type: 'job_done', jobId, epoch: result.epoch });
    const job = ctx.scheduler.finish(jobId, ctx.clock.now());
    freeAgent(agent);
    const em = result.evaluation.exactMatch;
    ctx.log.info({ agentId: agent.agentId, jobId, exactMatch: em }, `${jobId} finished on ${agent.agentId}`);
    ctx.emit(
      'finished',
      `${displayJobId(jobId)} finished on ${agent.agentId}: exact match ${Number.isFinite(em) ? (em * 100).toFixed(1) + '%' : '-'} (attempt ${job.attempt})`,
      { jobId, agentId: agent.agentId },
    );
    ctx.schedule();
    ctx.checkFinished();
  }

  onFailed(agent: AgentRecord, failed: JobFailed): void {
    const { ctx } = this;
    const jobId = failed.jobId;
    freeAgent(agent);
    ctx.store.dropUploads(jobId);
    if (!failed.error.retryable) {
      ctx.failJob(
        jobId,
        failed.error,
        `${displayJobId(jobId)} failed on ${agent.agentId}: ${failed.error.message} (not retryable)`,
      );
    } else {
      const job = ctx.scheduler.get(jobId);
      ctx.requeue(jobId, `failed on ${agent.agentId}: ${failed.error.message}`, true, failed.error);
      ctx.log.warn(
        { agentId: agent.agentId, jobId, err: failed.error },
        `${jobId} failed on ${agent.agentId} (retryable) at step ${job?.step ?? 0}`,
      );
    }
    ctx.schedule();
    ctx.checkFinished();
  }
}
