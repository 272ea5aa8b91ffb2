// What the hand-written coordinators of the agent tests do with checkpoint uploads: gather the chunks of each
// upload, and when one is complete, check it as the coordinator does (size and sha256) and answer with the ack.
import type { CheckpointAck, CheckpointChunk } from '../../protocol/messages.ts';
import { sha256Hex } from '../../protocol/checkpoint-chunks.ts';

export class ChunkUploads {
  private readonly uploads = new Map<string, CheckpointChunk[]>();

  /** Adds one chunk; once its upload is complete, the reassembled bytes and the ack to send (else undefined). */
  add(chunk: CheckpointChunk): { blob: Buffer; ack: CheckpointAck } | undefined {
    const parts = this.uploads.get(chunk.checkpointId) ?? [];
    parts[chunk.index] = chunk;
    this.uploads.set(chunk.checkpointId, parts);
    if (parts.filter((p) => p !== undefined).length !== chunk.count) return undefined;
    this.uploads.delete(chunk.checkpointId);
    const blob = Buffer.concat(parts.map((p) => p.data));
    const ok = blob.byteLength === chunk.totalBytes && sha256Hex(blob) === chunk.sha256;
    return {
      blob,
      ack: {
        type: 'checkpoint_ack',
        jobId: chunk.jobId,
        epoch: chunk.epoch,
        checkpointId: chunk.checkpointId,
        ok,
        ...(ok ? {} : { reason: 'sha256 mismatch' }),
      },
    };
  }
}
