// One self-describing binary per checkpoint:
//   magic "PEARCKPT" (8 bytes) | version u32 LE | header length u32 LE | header JSON (utf-8) | zero padding to 8 |
//   tensor bytes (little-endian, at the offsets the header gives) | sha256 of everything before it (32 bytes).
// The header names every tensor (name, shape, dtype, offset, byteLength) and carries the metadata a resume
// needs. Reading checks all of it, so a corrupt or truncated file is a CheckpointError, never a wrong model.
import { createHash } from 'node:crypto';
import { CheckpointError } from './errors.ts';

export const CHECKPOINT_MAGIC = 'PEARCKPT';
export const CHECKPOINT_VERSION = 1;
const PREFIX_BYTES = 16;
const TRAILER_BYTES = 32;
/** A header bigger than this is a corrupt length field, not a real header. */
const MAX_HEADER_BYTES = 64 * 2 ** 20;

export type TensorDType = 'float32' | 'int32';

export interface TensorRecord {
  name: string;
  shape: number[];
  dtype: TensorDType;
  data: Float32Array | Int32Array;
}

export interface TensorEntry {
  name: string;
  shape: number[];
  dtype: TensorDType;
  /** From the start of the tensor section. */
  offset: number;
  byteLength: number;
}

interface Header {
  format: 'pe-arena-checkpoint';
  version: number;
  dataBytes: number;
  tensors: TensorEntry[];
  meta: unknown;
}

export interface DecodedCheckpoint<M> {
  meta: M;
  tensors: Map<string, TensorRecord>;
  /** In file order. */
  order: string[];
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8;
const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export function encodeCheckpoint(meta: unknown, tensors: readonly TensorRecord[]): Uint8Array {
  const entries: TensorEntry[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new CheckpointError(`cannot write checkpoint: tensor name ${t.name} appears twice`);
    names.add(t.name);
    if (t.data.length !== sizeOf(t.shape)) {
      throw new CheckpointError(
        `cannot write checkpoint: tensor ${t.name} has ${t.data.length} values for shape [${t.shape.join(',')}]`,
      );
    }
    entries.push({ name: t.name, shape: [...t.shape], dtype: t.dtype, offset, byteLength: t.data.byteLength });
    offset = align8(offset + t.data.byteLength);
  }
  const header: Header = {
    format: 'pe-arena-checkpoint',
    version: CHECKPOINT_VERSION,
    dataBytes: offset,
    tensors: entries,
    meta,
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = align8(PREFIX_BYTES + headerBytes.length);
  const total = dataStart + offset + TRAILER_BYTES;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(CHECKPOINT_MAGIC), 0);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, headerBytes.length, true);
  out.set(headerBytes, PREFIX_BYTES);
  tensors.forEach((t, i) => {
    const entry = entries[i] as TensorEntry;
    const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    // Typed arrays are host-endian; every platform tfjs runs on is little-endian, which the format declares.
    out.set(src, dataStart + entry.offset);
  });
  out.set(
    createHash('sha256')
      .update(out.subarray(0, total - TRAILER_BYTES))
      .digest(),
    total - TRAILER_BYTES,
  );
  return out;
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0;
}

function validateHeader(raw: unknown): Header {
  if (typeof raw !== 'object' || raw === null) throw new CheckpointError('checkpoint header is not an object');
  const h = raw as Record<string, unknown>;
  if (h['format'] !== 'pe-arena-checkpoint')
    throw new CheckpointError(`checkpoint header format is ${String(h['format'])}, expected pe-arena-checkpoint`);
  if (!isNonNegInt(h['dataBytes']))
    throw new CheckpointError('checkpoint header: dataBytes is not a non-negative integer');
  if (!Array.isArray(h['tensors'])) throw new CheckpointError('checkpoint header: tensors is not a list');
  const dataBytes = h['dataBytes'];
  const tensors: TensorEntry[] = [];
  const names = new Set<string>();
  let end = 0;
  (h['tensors'] as unknown[]).forEach((rawEntry, i) => {
    const e = (typeof rawEntry === 'object' && rawEntry !== null ? rawEntry : {}) as Record<string, unknown>;
    const where = `checkpoint header: tensors[${i}]`;
    if (typeof e['name'] !== 'string' || e['name'] === '') throw new CheckpointError(`${where}.name is missing`);
    const name = e['name'];
    if (names.has(name)) throw new CheckpointError(`${where}: tensor ${name} appears twice`);
    names.add(name);
    const shape = e['shape'];
    if (!Array.isArray(shape) || !shape.every(isNonNegInt))
      throw new CheckpointError(`${where} (${name}).shape is not a list of sizes`);
    if (e['dtype'] !== 'float32' && e['dtype'] !== 'int32')
      throw new CheckpointError(`${where} (${name}).dtype ${String(e['dtype'])} is not float32 or int32`);
    const { offset, byteLength } = e;
    if (!isNonNegInt(offset) || !isNonNegInt(byteLength))
      throw new CheckpointError(`${where} (${name}): offset/byteLength are not sizes`);
    if (byteLength !== sizeOf(shape as number[]) * 4) {
      throw new CheckpointError(
        `${where} (${name}): byteLength ${byteLength} does not match shape [${(shape as number[]).join(',')}]`,
      );
    }
    if (offset % 4 !== 0 || offset < end || offset + byteLength > dataBytes) {
      throw new CheckpointError(
        `${where} (${name}): bytes ${offset}..${offset + byteLength} overlap or lie outside the ${dataBytes}-byte tensor section`,
      );
    }
    end = offset + byteLength;
    tensors.push({ name, shape: shape as number[], dtype: e['dtype'], offset, byteLength });
  });
  return { format: 'pe-arena-checkpoint', version: CHECKPOINT_VERSION, dataBytes, tensors, meta: h['meta'] };
}

/**
 * Reads and verifies a checkpoint. `checkMeta` validates the metadata (its errors become CheckpointErrors).
 */
export function decodeCheckpoint<M>(bytes: Uint8Array, checkMeta: (meta: unknown) => M): DecodedCheckpoint<M> {
  if (bytes.length < PREFIX_BYTES + TRAILER_BYTES) {
    throw new CheckpointError(
      `checkpoint is ${bytes.length} bytes, too short to hold even the fixed prefix and sha256 (truncated?)`,
    );
  }
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== CHECKPOINT_MAGIC)
    throw new CheckpointError(
      `not a pe-arena checkpoint: magic is ${JSON.stringify(magic)}, expected ${CHECKPOINT_MAGIC}`,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION)
    throw new CheckpointError(
      `checkpoint version ${version} is not supported (this build reads version ${CHECKPOINT_VERSION})`,
    );
  const headerLength = view.getUint32(12, true);
  if (headerLength > MAX_HEADER_BYTES || PREFIX_BYTES + headerLength + TRAILER_BYTES > bytes.length) {
    throw new CheckpointError(
      `checkpoint header length ${headerLength} does not fit in ${bytes.length} bytes (truncated or corrupt)`,
    );
  }
  // The digest covers every byte but itself, so any flipped bit (header, tensors or trailer) shows up here.
  const body = bytes.subarray(0, bytes.length - TRAILER_BYTES);
  const digest = createHash('sha256').update(body).digest();
  const stored = bytes.subarray(bytes.length - TRAILER_BYTES);
  let raw: unknown;
  try {
    raw = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)),
    );
  } catch (cause) {
    throw new CheckpointError('checkpoint header is not valid JSON (corrupt)', { cause });
  }
  const header = validateHeader(raw);
  const dataStart = align8(PREFIX_BYTES + headerLength);
  const expected = dataStart + header.dataBytes + TRAILER_BYTES;
  if (bytes.length !== expected) {
    throw new CheckpointError(
      `checkpoint is ${bytes.length} bytes but its header describes ${expected} (${bytes.length < expected ? 'truncated' : 'trailing bytes'})`,
    );
  }
  if (!digest.equals(stored)) {
    throw new CheckpointError(
      `checkpoint sha256 mismatch: stored ${Buffer.from(stored).toString('hex').slice(0, 16)}..., computed ${digest.toString('hex').slice(0, 16)}... (corrupt)`,
    );
  }
  let meta: M;
  try {
    meta = checkMeta(header.meta);
  } catch (cause) {
    if (cause instanceof CheckpointError) throw cause;
    throw new CheckpointError(
      `checkpoint metadata is invalid: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
  const tensors = new Map<string, TensorRecord>();
  for (const e of header.tensors) {
    // Copy out so the tensors are aligned and do not pin the whole blob.
    const copy = bytes.slice(dataStart + e.offset, dataStart + e.offset + e.byteLength);
    const data = e.dtype === 'float32' ? new Float32Array(copy.buffer) : new Int32Array(copy.buffer);
    tensors.set(e.name, { name: e.name, shape: e.shape, dtype: e.dtype, data });
  }
  return { meta, tensors, order: header.tensors.map((e) => e.name) };
}
