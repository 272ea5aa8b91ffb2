// Bytes <-> messages. encode() packs with msgpackr (typed arrays travel as typed arrays); each decode checks the
// size cap before touching the bytes, unpacks to unknown, and validates into a typed message.
// A coordinator <-> agent frame holds one or more messages back to back (the transport packs messages that queued up
// behind a busy socket into one frame); decodeAgentFrame / decodeCoordinatorFrame read them all, each on its own.
import { Packr, Unpackr, addExtension } from 'msgpackr';
import { MalformedMessageError, asMalformed } from './errors.ts';
import type { AgentToCoordinator, CoordinatorToAgent, PeerMessage } from './messages.ts';
import { validateAgentMessage, validateCoordinatorMessage, validatePeerMessage } from './validate.ts';

/** Room for a message's fields around its largest payload (a 64 MiB checkpoint chunk or tensor). */
export const HEADER_ROOM_BYTES = 64 * 1024;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024 + HEADER_ROOM_BYTES;

export interface DecodeOptions {
  /** Frames larger than this are refused before decoding. */
  maxBytes?: number;
}

// useRecords: false keeps the wire plain msgpack maps (readable by any msgpack library);
// moreTypes: typed arrays, Map, Set, Error etc. keep their class across the wire.
const packr = new Packr({ useRecords: false, moreTypes: true });

// msgpackr's own reader for typed arrays (ext 0x74: a type code byte, then the bytes) copies the bytes twice into a
// new ArrayBuffer, and allocating and later collecting one ArrayBuffer per array dominated a busy coordinator's
// receive CPU (a metrics message carries one small Float64Array; docs/research/protocol-optimisation.md). This reader makes the same value, a typed array of
// the same class that is aligned and never shares the frame's memory, with one copy: small arrays (up to
// SLAB_SMALL_BYTES) are placed side by side in shared 64 KiB slabs, larger ones get an ArrayBuffer each. So a small
// decoded array's `buffer` is the slab, not the array alone: use byteOffset/byteLength (and copy before
// transferring one to a worker; a transferred slab is simply replaced). msgpackr keeps extensions per process;
// this module is the only msgpackr user in pe-arena.
const TYPED_ARRAYS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
] as const;
const SLAB_BYTES = 64 * 1024;
const SLAB_SMALL_BYTES = 4 * 1024;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

/** Room for `bytes` bytes at an 8-byte aligned offset: in the current slab when small, else a buffer of its own. */
function place(bytes: number): { buffer: ArrayBuffer; offset: number } {
  if (bytes > SLAB_SMALL_BYTES) return { buffer: new ArrayBuffer(bytes), offset: 0 };
  let offset = (slabUsed + 7) & ~7;
  // A detached slab (transferred away) reports byteLength 0 and is replaced like a full one.
  if (offset + bytes > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_BYTES);
    offset = 0;
  }
  slabUsed = offset + bytes;
  return { buffer: slab, offset };
}

addExtension({
  type: 0x74,
  unpack(data: Uint8Array): unknown {
    const code = data[0] ?? -1;
    const bytes = data.byteLength - 1;
    const Class = TYPED_ARRAYS[code];
    if (Class !== undefined) {
      if (bytes % Class.BYTES_PER_ELEMENT !== 0)
        throw new Error(`${Class.name} of ${bytes} bytes: not a whole number of elements`);
      const { buffer, offset } = place(bytes);
      new Uint8Array(buffer, offset, bytes).set(data.subarray(1));
      return new Class(buffer, offset, bytes / Class.BYTES_PER_ELEMENT);
    }
    const buffer = data.slice(1).buffer;
    if (code === 16) return buffer;
    if (code === 17) return new DataView(buffer);
    throw new Error(`unknown typed array code ${code}`);
  },
});
const unpackr = new Unpackr({ useRecords: false, moreTypes: true, mapsAsObjects: true });

export function encode(message: AgentToCoordinator | CoordinatorToAgent | PeerMessage): Uint8Array {
  return packr.pack(message);
}

/** A `data` payload of at least this many bytes leaves in a ZeroMQ frame of its own (encodeParts). */
export const BULK_MIN_BYTES = 64 * 1024;

/** A message as the ZeroMQ transport sends it: its msgpack, and the bytes of its `data` field when they travel apart. */
export interface EncodedParts {
  head: Uint8Array;
  bulk: Uint8Array | undefined;
}

/**
 * encode(), except for a message whose `data` field holds BULK_MIN_BYTES or more (a checkpoint chunk): its msgpack
 * then says `bulk: <byte length>` instead, and the bytes follow as a second frame that ZeroMQ sends from where they
 * lie and the receiver reads where they land (decodeAgentBulk). Copying a 1 MiB chunk into fresh msgpack buffers on
 * the way out and again on the way in was most of a checkpoint transfer's CPU.
 */
export function encodeParts(message: AgentToCoordinator | CoordinatorToAgent): EncodedParts {
  const data = (message as { data?: unknown }).data;
  if (!(data instanceof Uint8Array) || data.byteLength < BULK_MIN_BYTES)
    return { head: packr.pack(message), bulk: undefined };
  const { data: _bytes, ...fields } = message as unknown as { data: Uint8Array } & Record<string, unknown>;
  return { head: packr.pack({ ...fields, bulk: data.byteLength }), bulk: data };
}

/** Unpacks one frame to an unvalidated value; the size cap is checked first. */
export function decodeUnknown(bytes: Uint8Array, options: DecodeOptions = {}): unknown {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!(bytes instanceof Uint8Array)) {
    throw new MalformedMessageError(`frame: expected bytes, got ${typeof bytes}`);
  }
  if (bytes.byteLength > maxBytes) {
    throw new MalformedMessageError(
      `frame of ${bytes.byteLength} bytes is over the ${maxBytes}-byte cap; refused before decoding`,
    );
  }
  if (bytes.byteLength === 0) throw new MalformedMessageError('frame: empty, expected a msgpack map');
  try {
    // unpack also throws on trailing bytes after the first value, so a frame is exactly one message.
    // A zeromq frame is a Node Buffer; msgpackr reads a plain Uint8Array view of it faster (its subarray and slice
    // calls skip Buffer's species lookup), and byte fields then come out as Uint8Array views, as typed.
    return unpackr.unpack(
      bytes instanceof Buffer ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes,
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MalformedMessageError(`frame: not valid msgpack (${bytes.byteLength} bytes): ${reason}`, '', {
      cause: error,
    });
  }
}

/** One message of a frame, or why it was refused. */
export type FrameItem<M> = { ok: true; message: M } | { ok: false; error: MalformedMessageError };

/**
 * The messages of a frame of back-to-back msgpack values, each validated on its own, read up to the first bad one:
 * that one is refused with an error saying where it was and how many bytes after it were dropped (one error per
 * frame at most, however much garbage it holds); the messages before it are delivered. Never throws.
 */
function decodeFrame<M>(bytes: Uint8Array, options: DecodeOptions, validate: (value: unknown) => M): FrameItem<M>[] {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!(bytes instanceof Uint8Array)) return [refused(`frame: expected bytes, got ${typeof bytes}`)];
  if (bytes.byteLength > maxBytes)
    return [refused(`frame of ${bytes.byteLength} bytes is over the ${maxBytes}-byte cap; refused before decoding`)];
  if (bytes.byteLength === 0) return [refused('frame: empty, expected a msgpack map')];
  // The frame's state lives in one object and the callback is a module function, so a frame costs no closures
  // (a round trip decodes two frames; what it allocates is what a busy process's collector has to sweep).
  const frame: FrameState = { items: [], validate, end: 0, size: bytes.byteLength, bad: undefined };
  reading = frame;
  try {
    unpackr.unpackMultiple(
      // See decodeUnknown: a plain Uint8Array view decodes faster than a Buffer.
      bytes instanceof Buffer ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes,
      takeValue,
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const at = frame.items.length === 0 ? '' : ` after ${frame.items.length} message(s), at byte ${frame.end}`;
    frame.bad = refused(`frame: not valid msgpack${at} (${bytes.byteLength} bytes): ${reason}`, '', { cause: error });
  } finally {
    reading = undefined;
  }
  if (frame.bad !== undefined) frame.items.push(frame.bad);
  return frame.items as FrameItem<M>[];
}

interface FrameState {
  items: FrameItem<unknown>[];
  validate: (value: unknown) => unknown;
  /** Where the last value read ended. */
  end: number;
  size: number;
  bad: FrameItem<unknown> | undefined;
}

/** The frame decodeFrame is reading (it is never re-entered: validation does not decode). */
let reading: FrameState | undefined;

function refused(
  message: string,
  field = '',
  more: { cause?: unknown; messageType?: string } = {},
): { ok: false; error: MalformedMessageError } {
  return { ok: false, error: new MalformedMessageError(message, field, more) };
}

/** unpackMultiple's callback: validates one value of the frame being read; false stops at the first bad one. */
function takeValue(value: unknown, _start?: number, stop?: number): boolean {
  const frame = reading!;
  frame.end = stop ?? frame.end;
  try {
    frame.items.push({ ok: true, message: frame.validate(value) });
    return true;
  } catch (error) {
    const e = asMalformed(error);
    // Where in the frame the refused message was, and what was dropped after it; nothing for a frame of one message.
    const rest = frame.size - frame.end;
    const where =
      frame.items.length === 0 && rest === 0
        ? ''
        : ` (message ${frame.items.length + 1} of the frame${rest > 0 ? `; the ${rest} bytes after it were dropped` : ''})`;
    frame.bad = refused(`${e.message}${where}`, e.field, {
      cause: e,
      ...(e.messageType === undefined ? {} : { messageType: e.messageType }),
    });
    return false;
  }
}

export function decodeAgentFrame(bytes: Uint8Array, options: DecodeOptions = {}): FrameItem<AgentToCoordinator>[] {
  return decodeFrame(bytes, options, validateAgentMessage);
}

export function decodeCoordinatorFrame(
  bytes: Uint8Array,
  options: DecodeOptions = {},
): FrameItem<CoordinatorToAgent>[] {
  return decodeFrame(bytes, options, validateCoordinatorMessage);
}

/**
 * A message that came as two frames (encodeParts): the head must be exactly one message announcing `bulk` as the
 * second frame's length; the bytes become its `data` (a view of the received frame, not a copy) before validation.
 * Never throws: what is wrong comes back as a refused item naming it.
 */
function decodeBulk<M>(
  head: Uint8Array,
  bulk: Uint8Array,
  options: DecodeOptions,
  validate: (value: unknown) => M,
): FrameItem<M>[] {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (bulk.byteLength > maxBytes)
    return [
      refused(`bulk frame of ${bulk.byteLength} bytes is over the ${maxBytes}-byte cap; refused before decoding`),
    ];
  let value: unknown;
  try {
    value = decodeUnknown(head, options);
  } catch (error) {
    return [{ ok: false, error: asMalformed(error) }];
  }
  const fields = value as Record<string, unknown>;
  const type = typeof fields?.type === 'string' ? fields.type : undefined;
  const more = type === undefined ? {} : { messageType: type };
  const name = type ?? 'message';
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(fields, 'bulk'))
    return [
      refused(`${name}: a second frame of ${bulk.byteLength} bytes, but no bulk field announces it`, 'bulk', more),
    ];
  if (fields.bulk !== bulk.byteLength)
    return [
      refused(
        `${name}.bulk: announces ${String(fields.bulk)} bytes, but the second frame has ${bulk.byteLength}`,
        'bulk',
        more,
      ),
    ];
  if (Object.hasOwn(fields, 'data'))
    return [refused(`${name}.data: set in the message and sent as a bulk frame too`, 'data', more)];
  delete fields.bulk;
  // A plain Uint8Array view of the frame, as msgpack bytes decode (see decodeUnknown).
  fields.data = bulk instanceof Buffer ? new Uint8Array(bulk.buffer, bulk.byteOffset, bulk.byteLength) : bulk;
  try {
    return [{ ok: true, message: validate(fields) }];
  } catch (error) {
    return [{ ok: false, error: asMalformed(error) }];
  }
}

export function decodeAgentBulk(
  head: Uint8Array,
  bulk: Uint8Array,
  options: DecodeOptions = {},
): FrameItem<AgentToCoordinator>[] {
  return decodeBulk(head, bulk, options, validateAgentMessage);
}

export function decodeCoordinatorBulk(
  head: Uint8Array,
  bulk: Uint8Array,
  options: DecodeOptions = {},
): FrameItem<CoordinatorToAgent>[] {
  return decodeBulk(head, bulk, options, validateCoordinatorMessage);
}

/** Runs a decode step so that only MalformedMessageError can come out of it, whatever the bytes were. */
function guarded<M>(bytes: Uint8Array, options: DecodeOptions | undefined, validate: (value: unknown) => M): M {
  try {
    return validate(decodeUnknown(bytes, options));
  } catch (error) {
    throw asMalformed(error);
  }
}

export function decodeAgentMessage(bytes: Uint8Array, options?: DecodeOptions): AgentToCoordinator {
  return guarded(bytes, options, validateAgentMessage);
}

export function decodeCoordinatorMessage(bytes: Uint8Array, options?: DecodeOptions): CoordinatorToAgent {
  return guarded(bytes, options, validateCoordinatorMessage);
}

export function decodePeerMessage(bytes: Uint8Array, options?: DecodeOptions): PeerMessage {
  return guarded(bytes, options, validatePeerMessage);
}

/** A float32 view of a received frame of whole float32s (a copy only when the bytes are not 4-byte aligned). */
function floatsOf(frame: Uint8Array): Float32Array {
  if (frame.byteOffset % 4 === 0) return new Float32Array(frame.buffer, frame.byteOffset, frame.byteLength / 4);
  return new Float32Array(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength));
}

/**
 * A peer message and the second frame that may follow it: a peer_data with `bulk: 'f32'` comes back with the frame's
 * float32s in `data`, read where they landed. Throws MalformedMessageError for anything else.
 */
export function decodePeerParts(body: Uint8Array, bulk: Uint8Array | undefined, options?: DecodeOptions): PeerMessage {
  const message = decodePeerMessage(body, options);
  try {
    if (message.type === 'peer_data' && (message.bulk !== undefined || bulk !== undefined)) {
      const from = `${message.channel === 'coll' ? `collective #${message.tag}` : `tag ${message.tag}`} from rank ${message.source}`;
      if (bulk === undefined) throw new Error(`${from}: bulk ${String(message.bulk)} without its second frame`);
      if (message.bulk === undefined) throw new Error(`${from}: a second frame without bulk set`);
      if (bulk.byteLength % 4 !== 0)
        throw new Error(`${from}: bulk frame of ${bulk.byteLength} bytes is not a whole number of float32s`);
      return { ...message, data: floatsOf(bulk) };
    }
    if (bulk !== undefined) throw new Error(`a second frame on a ${message.type}`);
  } catch (error) {
    throw asMalformed(error);
  }
  return message;
}
