// A resuming job's checkpoint on its way down: checkpoint_request, then checkpoint_chunk messages reassembled and
// verified against the sha256 the assignment announced (checkpoint-transfer.ts). A corrupt copy, an error answer
// or silence past fetchTimeoutMs asks again, a bounded number of times, then gives up.
import type { Logger } from 'pino';
import type { CheckpointChunk, CheckpointId, CheckpointRequest, JobId } from '../protocol/messages.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { ChunkAssembler } from './checkpoint-transfer.ts';
import { CheckpointTransferError } from './errors.ts';

export interface FetchContext {
  clock: Clock;
  log: Logger;
  send(request: CheckpointRequest): void;
  fetchTimeoutMs: number;
  /** Re-requests after the first try. */
  transferRetries: number;
}

/** The checkpoint named by assign.resumeFrom. */
export interface ResumeSource {
  checkpointId: CheckpointId;
  step: number;
  sha256: string;
}

export interface FetchOutcome {
  /** The reassembled blob, verified; called once. */
  onVerified(data: Uint8Array, step: number): void;
  /** No verified copy after every retry; called once. */
  onGiveUp(error: CheckpointTransferError): void;
}

export class ResumeFetch {
  private assembler: ChunkAssembler;
  private attempts = 0;
  private timer: TimerHandle | undefined;
  private over = false;

  constructor(
    private readonly job: { jobId: JobId; epoch: number },
    readonly source: ResumeSource,
    private readonly ctx: FetchContext,
    private readonly outcome: FetchOutcome,
  ) {
    this.assembler = new ChunkAssembler(source.checkpointId, source.sha256);
  }

  get checkpointId(): CheckpointId {
    return this.source.checkpointId;
  }

  /** Ask for the checkpoint (again: a fresh assembler, so chunks of an earlier copy cannot mix in). */
  request(): void {
    if (this.over) return;
    const { clock, fetchTimeoutMs } = this.ctx;
    this.attempts++;
    this.assembler = new ChunkAssembler(this.source.checkpointId, this.source.sha256);
    clock.clearTimeout(this.timer);
    this.timer = clock.setTimeout(
      () => this.retry(`no complete checkpoint within ${fetchTimeoutMs} ms`),
      fetchTimeoutMs,
    );
    this.ctx.send({
      type: 'checkpoint_request',
      jobId: this.job.jobId,
      epoch: this.job.epoch,
      checkpointId: this.source.checkpointId,
    });
  }

  /** A chunk of our checkpoint (the caller matched job, epoch and checkpoint id). */
  onChunk(chunk: CheckpointChunk): void {
    if (this.over) return;
    let result;
    try {
      result = this.assembler.add(chunk);
    } catch (error) {
      this.retry((error as Error).message);
      return;
    }
    if (result.kind === 'incomplete') return;
    this.end();
    this.outcome.onVerified(result.data, result.step);
  }

  /** Ask again now (the coordinator could not serve the request), or give up once the retries are spent. */
  retry(why: string): void {
    if (this.over) return;
    if (this.attempts > this.ctx.transferRetries) {
      this.end();
      this.outcome.onGiveUp(
        new CheckpointTransferError(
          `cannot fetch checkpoint ${this.source.checkpointId} for ${this.job.jobId} after ${this.attempts} tries: ${why}`,
        ),
      );
      return;
    }
    this.ctx.log.warn(
      { jobId: this.job.jobId, checkpointId: this.source.checkpointId, attempt: this.attempts },
      `asking for the checkpoint again: ${why}`,
    );
    this.request();
  }

  /** Stop waiting (verified, given up, or the job ended); nothing is called after. */
  end(): void {
    this.over = true;
    this.ctx.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
