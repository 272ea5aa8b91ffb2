// Errors of the inference server. Each sets `name`, takes `cause`, says whether retrying can help, and carries
// the HTTP status the server answers with.
import { PeArenaError, type PeArenaErrorOptions } from '../../protocol/errors.ts';

export class ServeError extends PeArenaError {
  override readonly name: string = 'ServeError';
  readonly status: number;
  constructor(message: string, options: PeArenaErrorOptions & { status?: number } = {}) {
    super(message, options);
    this.status = options.status ?? 500;
  }
}

/** The request is malformed: bad JSON, a missing or wrongly typed field. */
export class BadRequestError extends ServeError {
  override readonly name = 'BadRequestError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, status: 400 });
  }
}

/** No model of that name; the message lists the known ones. */
export class UnknownModelError extends ServeError {
  override readonly name = 'UnknownModelError';
  constructor(
    readonly model: string,
    readonly known: readonly string[],
  ) {
    super(`unknown model '${model}': known models are ${known.length === 0 ? '(none)' : known.join(', ')}, or "all"`, {
      status: 404,
    });
  }
}

/** The problem (or the request body) is longer than the models can take. */
export class TooLongError extends ServeError {
  override readonly name = 'TooLongError';
  constructor(message: string) {
    super(message, { status: 413 });
  }
}

/** A model file could not be loaded (corrupt, wrong format). */
export class ModelLoadError extends ServeError {
  override readonly name = 'ModelLoadError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, status: 500 });
  }
}
