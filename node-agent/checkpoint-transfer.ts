// The receiving side of checkpoint transfer: chunks (cut by protocol/checkpoint-chunks.ts) reassembled and verified
// against the sha256 of the whole blob that every chunk carries.
import { sha256Hex } from '../protocol/checkpoint-chunks.ts';
import type { CheckpointChunk, CheckpointId } from '../protocol/messages.ts';
import { CheckpointTransferError } from './errors.ts';

export type AssemblyResult =
  | { kind: 'incomplete'; received: number; count: number }
  | { kind: 'complete'; data: Uint8Array; sha256: string; step: number };

/**
 * Reassembles one blob from its chunks, in any order; duplicates are ignored. Throws CheckpointTransferError
 * when a chunk disagrees with the first one (count, size, sha256), is out of range, or the whole blob's
 * sha256 does not match; the caller then asks for the blob again.
 */
export class ChunkAssembler {
  private readonly parts = new Map<number, Uint8Array>();
  private first: CheckpointChunk | undefined;

  constructor(
    readonly checkpointId: CheckpointId,
    /** The sha256 the blob must have, when known in advance (assign.resumeFrom.sha256). */
    private readonly expectedSha256?: string,
    private readonly maxTotalBytes = 8 * 1024 ** 3,
  ) {}

  get received(): number {
    return this.parts.size;
  }

  add(chunk: CheckpointChunk): AssemblyResult {
    const where = `checkpoint ${chunk.checkpointId} chunk ${chunk.index}/${chunk.count}`;
    if (chunk.checkpointId !== this.checkpointId) {
      throw new CheckpointTransferError(`${where}: expected checkpoint ${this.checkpointId}`);
    }
    if (
      !Number.isInteger(chunk.count) ||
      chunk.count < 1 ||
      !Number.isInteger(chunk.index) ||
      chunk.index < 0 ||
      chunk.index >= chunk.count
    ) {
      throw new CheckpointTransferError(`${where}: index out of range`);
    }
    if (!Number.isInteger(chunk.totalBytes) || chunk.totalBytes < 0 || chunk.totalBytes > this.maxTotalBytes) {
      throw new CheckpointTransferError(`${where}: totalBytes ${chunk.totalBytes} out of range`);
    }
    const first = (this.first ??= chunk);
    if (
      chunk.count !== first.count ||
      chunk.totalBytes !== first.totalBytes ||
      chunk.sha256 !== first.sha256 ||
      chunk.step !== first.step
    ) {
      throw new CheckpointTransferError(`${where}: count, totalBytes, step or sha256 differ from the first chunk`);
    }
    if (this.expectedSha256 !== undefined && chunk.sha256 !== this.expectedSha256) {
      throw new CheckpointTransferError(
        `${where}: announced sha256 ${chunk.sha256} is not the expected ${this.expectedSha256}`,
      );
    }
    if (!this.parts.has(chunk.index)) this.parts.set(chunk.index, chunk.data);
    if (this.parts.size < first.count) return { kind: 'incomplete', received: this.parts.size, count: first.count };

    let size = 0;
    for (const part of this.parts.values()) size += part.byteLength;
    if (size !== first.totalBytes) {
      throw new CheckpointTransferError(
        `checkpoint ${this.checkpointId}: chunks hold ${size} bytes, header says ${first.totalBytes}`,
      );
    }
    const data = new Uint8Array(size);
    let offset = 0;
    for (let i = 0; i < first.count; i++) {
      const part = this.parts.get(i);
      if (part === undefined) throw new CheckpointTransferError(`checkpoint ${this.checkpointId}: chunk ${i} missing`);
      data.set(part, offset);
      offset += part.byteLength;
    }
    const sha256 = sha256Hex(data);
    if (sha256 !== first.sha256) {
      throw new CheckpointTransferError(
        `checkpoint ${this.checkpointId}: sha256 of the reassembled blob is ${sha256}, expected ${first.sha256}`,
      );
    }
    return { kind: 'complete', data, sha256, step: first.step };
  }
}
