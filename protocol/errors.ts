// Errors of the protocol layer. Each sets `name`, takes `cause`, and says whether retrying can help;
// toWireError/fromWireError carry them across the wire as {name, message, stack, retryable}.
import type { WireError } from './messages.ts';

export class ProtocolError extends Error {
  override readonly name: string = 'ProtocolError';
  readonly retryable: boolean;
  constructor(message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

/** Bytes that are not a valid message: names the offending field (or says the frame is not msgpack / too big). */
export class MalformedMessageError extends ProtocolError {
  override readonly name = 'MalformedMessageError';
  /** Dotted path of the offending field, e.g. "job.training.steps"; "" for the frame itself. */
  readonly field: string;
  constructor(message: string, field = '', options: { cause?: unknown } = {}) {
    super(message, options);
    this.field = field;
  }
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
