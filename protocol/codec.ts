// Bytes <-> messages. encode() packs with msgpackr (typed arrays travel as typed arrays); each decode checks the
// size cap before touching the bytes, unpacks to unknown, and validates into a typed message.
import { Packr, Unpackr } from 'msgpackr';
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
const unpackr = new Unpackr({ useRecords: false, moreTypes: true, mapsAsObjects: true });

export function encode(message: AgentToCoordinator | CoordinatorToAgent | PeerMessage): Uint8Array {
  return packr.pack(message);
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
