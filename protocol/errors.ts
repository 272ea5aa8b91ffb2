// The root of every pe-arena error, and the errors of the protocol layer. Each error sets `name`, takes `cause`,
// and says whether retrying can help; toWireError/fromWireError carry them across the wire as
// {name, message, stack, retryable}. The root lives here because protocol is the leaf every folder may import.
import type { WireError } from './messages.ts';

export interface PeArenaErrorOptions {
  readonly cause?: unknown;
  /** Whether another attempt (another node, another copy) can succeed. Default false: say so where it can. */
  readonly retryable?: boolean;
}

/** The one base class: each folder's errors.ts derives its own base from it. */
export class PeArenaError extends Error {
  override readonly name: string = 'PeArenaError';
  readonly retryable: boolean;
  constructor(message: string, options: PeArenaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

export class ProtocolError extends PeArenaError {
  override readonly name: string = 'ProtocolError';
}

/** Bytes that are not a valid message: names the offending field (or says the frame is not msgpack / too big). */
export class MalformedMessageError extends ProtocolError {
  override readonly name = 'MalformedMessageError';
  /** Dotted path of the offending field, e.g. "job.training.steps"; "" for the frame itself. */
  readonly field: string;
  /** The message's `type` when it could be read (undefined for garbage frames). */
  readonly messageType: string | undefined;
  constructor(message: string, field = '', options: { cause?: unknown; messageType?: string } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.field = field;
    this.messageType = options.messageType;
  }
}

/** Whatever a decoder threw, as a MalformedMessageError (a decoder bug must not take a server down either). */
export function asMalformed(error: unknown): MalformedMessageError {
  if (error instanceof MalformedMessageError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new MalformedMessageError(`frame: could not be decoded: ${reason}`, '', { cause: error });
}

/** A socket-level failure: bind/connect failed, the peer is gone, a send timed out, or the transport is closed. */
export class TransportError extends ProtocolError {
  override readonly name = 'TransportError';
}

/** Key files missing, unreadable, or not a valid Z85 CURVE key. */
export class KeyError extends ProtocolError {
  override readonly name = 'KeyError';
}

export class VersionMismatchError extends ProtocolError {
  override readonly name = 'VersionMismatchError';
  constructor(
    readonly ours: number,
    readonly theirs: number,
  ) {
    super(`protocol version mismatch: ours is ${ours}, the peer speaks ${theirs}`);
  }
}

export class CommunicatorError extends ProtocolError {
  override readonly name = 'CommunicatorError';
}

/**
 * An error as it crosses the wire. A pe-arena error says itself whether it is retryable; anything else (a bug, an
 * out-of-memory, a library's error) is taken as retryable, since another node or another attempt may not hit it.
 */
export function toWireError(error: unknown): WireError {
  if (error instanceof Error) {
    const retryable = (error as { retryable?: unknown }).retryable;
    return {
      name: error.name,
      message: error.message,
      ...(error.stack === undefined ? {} : { stack: error.stack }),
      retryable: typeof retryable === 'boolean' ? retryable : true,
    };
  }
  return { name: 'Error', message: String(error), retryable: true };
}

/** Rebuilds an error that crossed the wire; the remote stack is kept, and retryable survives. */
export function fromWireError(wire: WireError): ProtocolError {
  const error = new ProtocolError(wire.message, { retryable: wire.retryable });
  Object.defineProperty(error, 'name', { value: wire.name });
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}
