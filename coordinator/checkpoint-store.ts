// Checkpoints and final models arrive as chunks; the store reassembles them, checks size and sha256, and
// writes them atomically (temp file, fsync, rename, fsync of the directory). Only then is an upload acknowledged.
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../protocol/checkpoint-chunks.ts';
import type { CheckpointChunk, CheckpointId, JobId } from '../protocol/messages.ts';
import { CheckpointRejectedError } from './errors.ts';
import type { CheckpointRef } from './journal.ts';

/** An upload larger than this is refused before buffering (a bad totalBytes must not exhaust memory). */
export const MAX_BLOB_BYTES = 2 * 1024 ** 3;

const MAX_CHUNKS = 1_000_000;

interface Upload {
  jobId: JobId;
  epoch: number;
  checkpointId: CheckpointId;
  kind: 'checkpoint' | 'final';
  step: number;
  count: number;
  totalBytes: number;
  sha256: string;
  chunks: (Uint8Array | undefined)[];
  received: number;
}

export type ChunkOutcome =
  | { status: 'partial' }
  | { status: 'complete'; kind: 'checkpoint' | 'final'; ref: CheckpointRef }
  | { status: 'rejected'; reason: string };

export class CheckpointStore {
  private readonly uploads = new Map<string, Upload>();

  constructor(
    private readonly runDir: string,
    private readonly keep: number,
  ) {}

  /** Take one chunk. On the last chunk the blob is checked and written, or refused with a reason. */
  accept(chunk: CheckpointChunk): ChunkOutcome {
    const key = `${chunk.jobId}\0${chunk.epoch}\0${chunk.checkpointId}`;
    let up = this.uploads.get(key);
    const bad = (reason: string): ChunkOutcome => {
      this.uploads.delete(key);
      return { status: 'rejected', reason };
    };
    if (!Number.isInteger(chunk.count) || chunk.count < 1 || chunk.count > MAX_CHUNKS) {
      return bad(`chunk count ${chunk.count} is not an integer in 1..${MAX_CHUNKS}`);
    }
    if (!Number.isInteger(chunk.index) || chunk.index < 0 || chunk.index >= chunk.count) {
      return bad(`chunk index ${chunk.index} is outside 0..${chunk.count - 1}`);
    }
    if (!Number.isInteger(chunk.totalBytes) || chunk.totalBytes < 0 || chunk.totalBytes > MAX_BLOB_BYTES) {
      return bad(`totalBytes ${chunk.totalBytes} is not between 0 and ${MAX_BLOB_BYTES}`);
    }
    if (up === undefined || chunk.index === 0) {
      // index 0 starts (or restarts, on a resend) the upload.
      up = {
        jobId: chunk.jobId,
        epoch: chunk.epoch,
        checkpointId: chunk.checkpointId,
        kind: chunk.kind,
        step: chunk.step,
        count: chunk.count,
        totalBytes: chunk.totalBytes,
        sha256: chunk.sha256,
        chunks: new Array<Uint8Array | undefined>(chunk.count).fill(undefined),
        received: 0,
      };
      this.uploads.set(key, up);
    } else if (up.count !== chunk.count || up.totalBytes !== chunk.totalBytes || up.sha256 !== chunk.sha256) {
      return bad(`chunk ${chunk.index} disagrees with chunk 0 on count, totalBytes or sha256`);
    }
    if (up.chunks[chunk.index] === undefined) up.received++;
    up.chunks[chunk.index] = chunk.data;
    if (chunk.index !== chunk.count - 1) return { status: 'partial' };

    // The last chunk: chunks travel in order on one connection, so anything still missing was lost.
    this.uploads.delete(key);
    const missing = up.chunks.flatMap((c, i) => (c === undefined ? [i] : []));
    if (missing.length > 0)
      return { status: 'rejected', reason: `missing chunks ${missing.slice(0, 10).join(', ')} of ${up.count}` };
    const blob = concat(up.chunks as Uint8Array[]);
    if (blob.byteLength !== up.totalBytes)
      return { status: 'rejected', reason: `got ${blob.byteLength} bytes, expected ${up.totalBytes}` };
    const digest = sha256Hex(blob);
    if (digest !== up.sha256)
      return { status: 'rejected', reason: `sha256 mismatch: got ${digest}, expected ${up.sha256}` };

    const rel =
      up.kind === 'final'
        ? join('jobs', up.jobId, 'final_model', 'model.bin')
        : join('jobs', up.jobId, 'checkpoints', `${String(up.step).padStart(9, '0')}-${up.checkpointId}.ckpt`);
    atomicWrite(join(this.runDir, rel), blob);
    if (up.kind === 'final') {
      atomicWrite(
        join(this.runDir, 'jobs', up.jobId, 'final_model', 'meta.json'),
        Buffer.from(
          JSON.stringify({ jobId: up.jobId, step: up.step, sha256: up.sha256, bytes: up.totalBytes }, null, 2) + '\n',
        ),
      );
    }
    return {
      status: 'complete',
      kind: up.kind,
      ref: { checkpointId: up.checkpointId, step: up.step, totalBytes: up.totalBytes, sha256: up.sha256, file: rel },
    };
  }

  /** Forget half-received uploads of a job (its agent was lost or its epoch moved on). */
  dropUploads(jobId: JobId): void {
    for (const [key, up] of this.uploads) if (up.jobId === jobId) this.uploads.delete(key);
  }

  /** Keep the newest `keep` checkpoint files of a job; returns the refs still kept. */
  prune(jobId: JobId, refs: CheckpointRef[]): CheckpointRef[] {
    const sorted = [...refs].sort((a, b) => a.step - b.step);
    const kept = sorted.slice(-this.keep);
    const keptFiles = new Set(kept.map((r) => r.file));
    for (const r of sorted) if (!keptFiles.has(r.file)) rmSync(join(this.runDir, r.file), { force: true });
    // Files from uploads the journal never acknowledged (crash between write and journal) go too.
    const dir = join(this.runDir, 'jobs', jobId, 'checkpoints');
    try {
      for (const name of readdirSync(dir)) {
        if (!keptFiles.has(join('jobs', jobId, 'checkpoints', name))) rmSync(join(dir, name), { force: true });
      }
    } catch {
      // No directory yet: nothing to prune.
    }
    return kept;
  }

  /** Read a stored checkpoint back and verify it, then cut it into chunks for an agent. */
  read(ref: CheckpointRef): Uint8Array {
    const blob = readFileSync(join(this.runDir, ref.file));
    if (blob.byteLength !== ref.totalBytes || sha256Hex(blob) !== ref.sha256) {
      throw new CheckpointRejectedError(`stored checkpoint ${ref.file} does not match its sha256`);
    }
    return blob;
  }
}

/** Write to a temp file, fsync it, rename over the target, fsync the directory: readers see all or nothing. */
export function atomicWrite(file: string, data: Uint8Array): void {
  const dir = file.slice(0, Math.max(file.lastIndexOf('/'), 0)) || '.';
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    const dfd = openSync(dir, 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}
