// TensorBoard's event-file format, written by hand: TFRecord framing (length, masked CRC-32C of the length, payload,
// masked CRC-32C of the payload) around `Event` protobufs with scalar `Summary` values. Three small messages do not
// need a protobuf library; the tests check the bytes with protoc and the CRC against its published test vector.
import { crc32c } from '@aws-crypto/crc32c';
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';

export interface Scalar {
  readonly tag: string;
  readonly value: number;
}

export interface TensorBoardEvent {
  /** Seconds since the epoch (TensorBoard's wall_time). */
  readonly wallTime: number;
  readonly step: number;
  readonly fileVersion?: string;
  readonly scalars?: readonly Scalar[];
}

/** The first record of every file: TensorBoard reads the rest only after it. */
export const FILE_VERSION = 'brain.Event:2';

// Field keys: (field number << 3) | wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
const EVENT_WALL_TIME = (1 << 3) | 1;
const EVENT_STEP = (2 << 3) | 0;
const EVENT_FILE_VERSION = (3 << 3) | 2;
const EVENT_SUMMARY = (5 << 3) | 2;
const SUMMARY_VALUE = (1 << 3) | 2;
const VALUE_TAG = (1 << 3) | 2;
const VALUE_SIMPLE_VALUE = (2 << 3) | 5;

/** Growable byte buffer with the few protobuf primitives the three messages use. */
class ProtoWriter {
  private bytes = new Uint8Array(64);
  private length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  varint(value: bigint | number): this {
    let v = BigInt.asUintN(64, BigInt(value));
    this.reserve(10);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      this.bytes[this.length++] = byte;
    } while (v !== 0n);
    return this;
  }

  double(value: number): this {
    this.reserve(8);
    new DataView(this.bytes.buffer).setFloat64(this.length, value, true);
    this.length += 8;
    return this;
  }

  float(value: number): this {
    this.reserve(4);
    new DataView(this.bytes.buffer).setFloat32(this.length, value, true);
    this.length += 4;
    return this;
  }

  raw(data: Uint8Array): this {
    this.varint(data.length);
    this.reserve(data.length);
    this.bytes.set(data, this.length);
    this.length += data.length;
    return this;
  }

  finish(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

const utf8 = new TextEncoder();
/** Tags repeat on every step (a handful per job): encode each once, not once per scalar on the metrics path. */
const tagBytes = new Map<string, Uint8Array>();
function encodedTag(tag: string): Uint8Array {
  let bytes = tagBytes.get(tag);
  if (bytes === undefined) {
    bytes = utf8.encode(tag);
    if (tagBytes.size < 4096) tagBytes.set(tag, bytes);
  }
  return bytes;
}

export function encodeEvent(event: TensorBoardEvent): Uint8Array {
  const out = new ProtoWriter().varint(EVENT_WALL_TIME).double(event.wallTime);
  if (event.step !== 0) out.varint(EVENT_STEP).varint(Math.trunc(event.step));
  if (event.fileVersion !== undefined) out.varint(EVENT_FILE_VERSION).raw(utf8.encode(event.fileVersion));
  if (event.scalars !== undefined && event.scalars.length > 0) {
    const summary = new ProtoWriter();
    for (const scalar of event.scalars) {
      const value = new ProtoWriter()
        .varint(VALUE_TAG)
        .raw(encodedTag(scalar.tag))
        .varint(VALUE_SIMPLE_VALUE)
        .float(scalar.value)
        .finish();
      summary.varint(SUMMARY_VALUE).raw(value);
    }
    out.varint(EVENT_SUMMARY).raw(summary.finish());
  }
  return out.finish();
}

/** TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant (so a CRC of CRCs is not trivial). */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data) >>> 0;
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

export function frameRecord(payload: Uint8Array): Uint8Array {
  const record = new Uint8Array(8 + 4 + payload.length + 4);
  const view = new DataView(record.buffer);
  view.setBigUint64(0, BigInt(payload.length), true);
  view.setUint32(8, maskedCrc32c(record.subarray(0, 8)), true);
  record.set(payload, 12);
  view.setUint32(12 + payload.length, maskedCrc32c(payload), true);
  return record;
}

/** Appends framed events to one file; records are whole on disk after each flush (a reader skips a torn tail). */
export class EventFileWriter {
  private readonly fd: number;
  private pending: Uint8Array[] = [];

  constructor(
    readonly file: string,
    wallTime: number,
  ) {
    this.fd = openSync(file, 'a');
    this.add({ wallTime, step: 0, fileVersion: FILE_VERSION });
    this.flush();
  }

  add(event: TensorBoardEvent): void {
    this.pending.push(frameRecord(encodeEvent(event)));
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const all = Buffer.concat(this.pending);
    this.pending = [];
    let offset = 0;
    while (offset < all.length) offset += writeSync(this.fd, all, offset, all.length - offset);
  }

  close(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}

/**
 * Reads the events of one file back (for appending without repeating steps). Stops at the first record that is
 * torn or fails its checksum: what follows it cannot be trusted.
 */
export function readEventFile(file: string): TensorBoardEvent[] {
  const bytes = readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const events: TensorBoardEvent[] = [];
  let at = 0;
  while (at + 12 <= bytes.length) {
    const length = Number(view.getBigUint64(at, true));
    if (view.getUint32(at + 8, true) !== maskedCrc32c(bytes.subarray(at, at + 8))) break;
    const end = at + 12 + length;
    if (end + 4 > bytes.length) break;
    const payload = bytes.subarray(at + 12, end);
    if (view.getUint32(end, true) !== maskedCrc32c(payload)) break;
    events.push(decodeEvent(payload));
    at = end + 4;
  }
  return events;
}

/** The inverse of encodeEvent for the fields it writes; other fields are skipped. */
export function decodeEvent(payload: Uint8Array): TensorBoardEvent {
  const reader = new ProtoReader(payload);
  let wallTime = 0;
  let step = 0;
  let fileVersion: string | undefined;
  const scalars: Scalar[] = [];
  while (!reader.done) {
    const key = reader.varint();
    if (key === EVENT_WALL_TIME) wallTime = reader.double();
    else if (key === EVENT_STEP) step = reader.varint();
    else if (key === EVENT_FILE_VERSION) fileVersion = new TextDecoder().decode(reader.bytes());
    else if (key === EVENT_SUMMARY) {
      const summary = new ProtoReader(reader.bytes());
      while (!summary.done) {
        if (summary.varint() !== SUMMARY_VALUE) break;
        const value = new ProtoReader(summary.bytes());
        let tag = '';
        let simple = Number.NaN;
        while (!value.done) {
          const valueKey = value.varint();
          if (valueKey === VALUE_TAG) tag = new TextDecoder().decode(value.bytes());
          else if (valueKey === VALUE_SIMPLE_VALUE) simple = value.float();
          else value.skip(valueKey & 7);
        }
        scalars.push({ tag, value: simple });
      }
    } else reader.skip(key & 7);
  }
  return { wallTime, step, ...(fileVersion === undefined ? {} : { fileVersion }), scalars };
}

class ProtoReader {
  private at = 0;
  private readonly view: DataView;
  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  get done(): boolean {
    return this.at >= this.data.length;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const byte = this.data[this.at++];
      if (byte === undefined) throw new RangeError('protobuf: varint runs past the end');
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
  }
  double(): number {
    const value = this.view.getFloat64(this.at, true);
    this.at += 8;
    return value;
  }
  float(): number {
    const value = this.view.getFloat32(this.at, true);
    this.at += 4;
    return value;
  }
  bytes(): Uint8Array {
    const length = this.varint();
    const out = this.data.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.at += 8;
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.at += 4;
    else throw new RangeError(`protobuf: wire type ${wireType} is not supported`);
  }
}
