// A job's checkpoints and final model on their way up: chunks out (checkpoint-transfer.ts), then wait for the
// coordinator's checkpoint_ack, and send the whole blob again, same id, on ok: false or silence (bounded).
// Periodic checkpoints go one at a time, the newest waiting one replacing an older one waiting.
import type { Logger } from 'pino';
import type { CheckpointChunk, CheckpointId, JobId } from '../protocol/messages.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { newCheckpointId } from '../protocol/ids.ts';
import { chunkBlob } from '../protocol/checkpoint-chunks.ts';

export type UploadKind = 'checkpoint' | 'final';

export interface UploadContext {
  clock: Clock;
  log: Logger;
  send(chunk: CheckpointChunk): void;
  /** Whether the coordinator was heard from lately: periodic checkpoints wait while it is away. */
  reachable(): boolean;
  ackTimeoutMs: number;
  /** Re-sends after the first try. */
  transferRetries: number;
  chunkBytes: number;
}

/** One blob until the coordinator acknowledges it or we give up. */
interface Upload {
  checkpointId: CheckpointId;
  kind: UploadKind;
  step: number;
  data: Uint8Array;
  attempts: number;
  timer: TimerHandle | undefined;
  /** Called once: true when acknowledged, false when given up. */
  done: (ok: boolean) => void;
}

export class CheckpointUploads {
  private readonly inFlight = new Map<CheckpointId, Upload>();
  private nextPeriodic: { step: number; data: Uint8Array } | undefined;
  private periodicInFlight = false;
  private cancelled = false;

  constructor(
    private readonly job: { jobId: JobId; epoch: number },
    private readonly ctx: UploadContext,
  ) {}

  /** Send a blob up; done(true) once acknowledged, done(false) once given up. Never both, never twice. */
  upload(kind: UploadKind, step: number, data: Uint8Array, done: (ok: boolean) => void): void {
    if (this.cancelled) return;
    const u: Upload = { checkpointId: newCheckpointId(), kind, step, data, attempts: 0, timer: undefined, done };
    this.inFlight.set(u.checkpointId, u);
    this.sendAll(u);
  }

  /** A periodic checkpoint from the worker: goes up when nothing else periodic is in flight. */
  offerPeriodic(step: number, data: Uint8Array): void {
    this.nextPeriodic = { step, data };
    this.pumpPeriodic();
  }

  /** Send the waiting periodic checkpoint, if any and if the coordinator is reachable (called when it is back). */
  pumpPeriodic(): void {
    if (this.periodicInFlight || this.cancelled) return;
    // While the coordinator is away only the newest checkpoint is kept; megabytes of chunks queued in the socket
    // would all land on whoever answers next.
    if (!this.ctx.reachable()) return;
    const next = this.nextPeriodic;
    if (next === undefined) return;
    this.nextPeriodic = undefined;
    this.periodicInFlight = true;
    this.upload('checkpoint', next.step, next.data, () => {
      this.periodicInFlight = false;
      this.pumpPeriodic();
    });
  }

  /** The coordinator's answer for this job and epoch; false when the id is none of ours. */
  onAck(checkpointId: CheckpointId, ok: boolean, reason: string | undefined): boolean {
    const u = this.inFlight.get(checkpointId);
    if (u === undefined) return false;
    if (ok) {
      this.ctx.log.info({ jobId: this.job.jobId, checkpointId, kind: u.kind, step: u.step }, `${u.kind} acknowledged`);
      this.settle(u, true);
    } else {
      this.retry(u, `refused: ${reason ?? 'no reason given'}`);
    }
    return true;
  }

  /** The job ended: stop every timer and forget every upload, without calling their done. */
  cancel(): void {
    this.cancelled = true;
    for (const u of this.inFlight.values()) this.ctx.clock.clearTimeout(u.timer);
    this.inFlight.clear();
    this.nextPeriodic = undefined;
  }

  private settle(u: Upload, ok: boolean): void {
    if (!this.inFlight.delete(u.checkpointId)) return;
    this.ctx.clock.clearTimeout(u.timer);
    u.done(ok);
  }

  private sendAll(u: Upload): void {
    const { clock, ackTimeoutMs } = this.ctx;
    u.attempts++;
    clock.clearTimeout(u.timer);
    u.timer = clock.setTimeout(() => this.retry(u, `no checkpoint_ack within ${ackTimeoutMs} ms`), ackTimeoutMs);
    const chunks = chunkBlob(
      { jobId: this.job.jobId, epoch: this.job.epoch, checkpointId: u.checkpointId, kind: u.kind, step: u.step },
      u.data,
      this.ctx.chunkBytes,
    );
    for (const chunk of chunks) this.ctx.send(chunk);
    this.ctx.log.debug(
      {
        jobId: this.job.jobId,
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

  private retry(u: Upload, why: string): void {
    if (!this.inFlight.has(u.checkpointId)) return;
    const where = { jobId: this.job.jobId, checkpointId: u.checkpointId, kind: u.kind };
    if (u.attempts > this.ctx.transferRetries) {
      this.ctx.log.error({ ...where, attempts: u.attempts }, `giving up on ${u.kind} upload: ${why}`);
      this.settle(u, false);
      return;
    }
    this.ctx.log.warn({ ...where, attempt: u.attempts }, `uploading again: ${why}`);
    this.sendAll(u);
  }
}
