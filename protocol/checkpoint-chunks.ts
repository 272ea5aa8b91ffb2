// Checkpoints and final models move as checkpoint_chunk messages, cut here for both directions (agent -> coordinator
// uploads, coordinator -> agent resumes): at most 1 MiB each, every chunk carrying the sha256 of the whole blob so
// the receiver verifies the reassembled bytes end to end.
import { createHash } from 'node:crypto';
import type { CheckpointChunk, CheckpointId, JobId } from './messages.ts';

export const MAX_CHUNK_BYTES = 1024 * 1024;

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface BlobHeader {
  jobId: JobId;
  epoch: number;
  checkpointId: CheckpointId;
  kind: 'checkpoint' | 'final';
  step: number;
}

/**
 * Split a blob into chunks of at most chunkBytes (views into data, no copies). An empty blob is one empty chunk.
 * `sha256` may be given when the caller knows it already (a stored checkpoint), to spare hashing it again.
 */
export function chunkBlob(
  header: BlobHeader,
  data: Uint8Array,
  chunkBytes = MAX_CHUNK_BYTES,
  sha256 = sha256Hex(data),
): CheckpointChunk[] {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) {
    throw new RangeError(`chunkBytes must be an integer in 1..${MAX_CHUNK_BYTES}, got ${chunkBytes}`);
  }
  const count = Math.max(1, Math.ceil(data.byteLength / chunkBytes));
  const chunks: CheckpointChunk[] = [];
  for (let index = 0; index < count; index++) {
    chunks.push({
      type: 'checkpoint_chunk',
      ...header,
      index,
      count,
      totalBytes: data.byteLength,
      sha256,
      data: data.subarray(index * chunkBytes, Math.min(data.byteLength, (index + 1) * chunkBytes)),
    });
  }
  return chunks;
}
