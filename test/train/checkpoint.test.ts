// The checkpoint binary: exact round trip, and every kind of damage is a CheckpointError that says what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCheckpoint, encodeCheckpoint, type TensorRecord } from '../../src/train/checkpoint.ts';
import { CheckpointError } from '../../src/train/errors.ts';

const tensors: TensorRecord[] = [
  { name: 'param/0', shape: [2, 3], dtype: 'float32', data: new Float32Array([1.5, -2, 3e-8, Math.PI, -0, 1e30]) },
  { name: 'ids', shape: [3], dtype: 'int32', data: new Int32Array([7, -1, 2 ** 31 - 1]) },
  { name: 'scalar', shape: [], dtype: 'float32', data: new Float32Array([42]) },
  { name: 'empty', shape: [0, 4], dtype: 'float32', data: new Float32Array(0) },
];
const meta = { step: 17, note: 'héllo', source: { rng: [1, 2, 3, 4], position: 9 } };
const anyMeta = (m: unknown): unknown => m;

void test('a checkpoint round-trips tensors bit for bit and the metadata exactly', () => {
  const bytes = encodeCheckpoint(meta, tensors);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), 'PEARCKPT');
  const decoded = decodeCheckpoint(bytes, anyMeta);
  assert.deepEqual(decoded.meta, meta);
  assert.deepEqual(
    decoded.order,
    tensors.map((t) => t.name),
  );
  for (const t of tensors) {
    const got = decoded.tensors.get(t.name);
    assert.ok(got, t.name);
    assert.deepEqual(got.shape, t.shape);
    assert.equal(got.dtype, t.dtype);
    assert.deepEqual(
      new Uint8Array(got.data.buffer, got.data.byteOffset, got.data.byteLength),
      new Uint8Array(t.data.buffer),
    );
  }
  // Deterministic: the same state gives the same bytes (so sha256s can be compared across runs).
  assert.deepEqual(encodeCheckpoint(meta, tensors), bytes);
});

void test('a flipped byte anywhere is caught', () => {
  const bytes = encodeCheckpoint(meta, tensors);
  // Positions in the magic, the version, the header length, the header, the tensor bytes and the sha256 trailer.
  const positions = [0, 9, 13, 20, 40, bytes.length - 60, bytes.length - 40, bytes.length - 33, bytes.length - 1];
  for (const i of positions) {
    const bad = bytes.slice();
    bad[i] = (bad[i] as number) ^ 0x10;
    assert.throws(
      () => decodeCheckpoint(bad, anyMeta),
      (e: unknown) => e instanceof CheckpointError && e.retryable === false && e.message.length > 10,
      `flip at byte ${i} of ${bytes.length}`,
    );
  }
  const tensorFlip = bytes.slice();
  tensorFlip[bytes.length - 40] = (tensorFlip[bytes.length - 40] as number) ^ 1;
  assert.throws(() => decodeCheckpoint(tensorFlip, anyMeta), /sha256 mismatch/);
});

void test('truncation, wrong magic, unknown version and trailing bytes give clear errors', () => {
  const bytes = encodeCheckpoint(meta, tensors);
  for (const n of [0, 10, 47, 100, bytes.length - 33, bytes.length - 1]) {
    assert.throws(() => decodeCheckpoint(bytes.subarray(0, n), anyMeta), CheckpointError, `truncated to ${n}`);
  }
  assert.throws(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 1), anyMeta), /truncated|sha256/);
  const longer = new Uint8Array(bytes.length + 8);
  longer.set(bytes);
  assert.throws(() => decodeCheckpoint(longer, anyMeta), CheckpointError);
  const magic = bytes.slice();
  magic.set(new TextEncoder().encode('PK\x03\x04'), 0);
  assert.throws(() => decodeCheckpoint(magic, anyMeta), /not a pe-arena checkpoint/);
  const version = bytes.slice();
  new DataView(version.buffer).setUint32(8, 99, true);
  assert.throws(() => decodeCheckpoint(version, anyMeta), /version 99/);
});

void test('a metadata check failure becomes a CheckpointError naming the problem', () => {
  const bytes = encodeCheckpoint(meta, tensors);
  assert.throws(
    () =>
      decodeCheckpoint(bytes, () => {
        throw new Error('job spec is missing');
      }),
    (e: unknown) => e instanceof CheckpointError && /job spec is missing/.test(e.message),
  );
});

void test('writing refuses inconsistent tensors', () => {
  assert.throws(
    () => encodeCheckpoint({}, [{ name: 'x', shape: [2, 2], dtype: 'float32', data: new Float32Array(3) }]),
    CheckpointError,
  );
  const dup: TensorRecord = { name: 'x', shape: [1], dtype: 'float32', data: new Float32Array(1) };
  assert.throws(() => encodeCheckpoint({}, [dup, dup]), /twice/);
});
