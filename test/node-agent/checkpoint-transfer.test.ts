import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { asCheckpointId, asJobId } from '../../protocol/ids.ts';
import { ChunkAssembler } from '../../node-agent/checkpoint-transfer.ts';
import { MAX_CHUNK_BYTES, chunkBlob, sha256Hex } from '../../protocol/checkpoint-chunks.ts';
import { CheckpointTransferError } from '../../node-agent/errors.ts';

const header = {
  jobId: asJobId('j'),
  epoch: 2,
  checkpointId: asCheckpointId('c1'),
  kind: 'checkpoint' as const,
  step: 40,
};

void test('chunks are at most 1 MiB, carry the whole blob sha256, and cover the blob exactly', () => {
  const blob = Uint8Array.from({ length: 2 * MAX_CHUNK_BYTES + 17 }, (_, i) => (i * 7) & 255);
  const chunks = chunkBlob(header, blob);
  assert.equal(chunks.length, 3);
  assert.deepEqual(
    chunks.map((c) => c.data.byteLength),
    [MAX_CHUNK_BYTES, MAX_CHUNK_BYTES, 17],
  );
  assert.ok(
    chunks.every(
      (c) =>
        c.sha256 === sha256Hex(blob) &&
        c.count === 3 &&
        c.totalBytes === blob.byteLength &&
        c.epoch === 2 &&
        c.step === 40,
    ),
  );
  assert.deepEqual(Buffer.concat(chunks.map((c) => c.data)), Buffer.from(blob));
  assert.throws(() => chunkBlob(header, blob, MAX_CHUNK_BYTES + 1), RangeError);
});

void test('an empty blob is one empty chunk and reassembles', () => {
  const chunks = chunkBlob(header, new Uint8Array(0));
  assert.equal(chunks.length, 1);
  const result = new ChunkAssembler(header.checkpointId).add(chunks[0]!);
  assert.equal(result.kind, 'complete');
});

void test('reassembly in any order, with duplicates, gives back the blob (property)', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 3000 }),
      fc.integer({ min: 1, max: 700 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (blob, size, shuffle) => {
        const chunks = chunkBlob(header, blob, size);
        const order = chunks.map((_, i) => i);
        for (const [k, r] of shuffle.entries()) {
          const a = k % order.length;
          const b = r % order.length;
          [order[a], order[b]] = [order[b]!, order[a]!];
        }
        const assembler = new ChunkAssembler(header.checkpointId, sha256Hex(blob));
        let result = assembler.add(chunks[order[0]!]!); // a duplicate first
        for (const i of order) result = assembler.add(chunks[i]!);
        assert.equal(result.kind, 'complete');
        assert.ok(result.kind === 'complete' && Buffer.from(result.data).equals(Buffer.from(blob)));
      },
    ),
    { numRuns: 200 },
  );
});

void test('a flipped byte, an unexpected sha256, or inconsistent headers are refused with CheckpointTransferError', () => {
  const blob = Uint8Array.from({ length: 1000 }, (_, i) => i & 255);
  const chunks = chunkBlob(header, blob, 300);
  const corrupt = new ChunkAssembler(header.checkpointId);
  corrupt.add(chunks[0]!);
  corrupt.add(chunks[1]!);
  corrupt.add(chunks[2]!);
  const bad = { ...chunks[3]!, data: Uint8Array.from(chunks[3]!.data, (b, i) => (i === 5 ? b ^ 1 : b)) };
  assert.throws(
    () => corrupt.add(bad),
    (e: unknown) => e instanceof CheckpointTransferError && /sha256/.test(e.message) && e.retryable,
  );

  assert.throws(() => new ChunkAssembler(header.checkpointId, 'f'.repeat(64)).add(chunks[0]!), /expected/);
  const mixed = new ChunkAssembler(header.checkpointId);
  mixed.add(chunks[0]!);
  assert.throws(() => mixed.add({ ...chunks[1]!, count: 9 }), CheckpointTransferError);
  assert.throws(() => new ChunkAssembler(header.checkpointId).add({ ...chunks[0]!, index: 4 }), /out of range/);
  assert.throws(() => new ChunkAssembler(asCheckpointId('other')).add(chunks[0]!), /expected checkpoint other/);
  const short = new ChunkAssembler(header.checkpointId);
  short.add(chunks[0]!);
  short.add(chunks[1]!);
  short.add(chunks[2]!);
  assert.throws(() => short.add({ ...chunks[3]!, data: chunks[3]!.data.subarray(1) }), /header says 1000/);
});
