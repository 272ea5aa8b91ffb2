// Errors of the data layer: bad task configs and malformed user files. Never retryable: the same
// config or file fails the same way on every node.
import { PeArenaError } from '../../protocol/errors.ts';

export class DataError extends PeArenaError {
  override readonly name = 'DataError';
  /** Dotted path of the offending config field (e.g. "task.params.maxDigits"), when there is one. */
  readonly field: string | undefined;
  /** The file and 1-based line, for problems in a user file. */
  readonly file: string | undefined;
  readonly line: number | undefined;
  constructor(message: string, options: { cause?: unknown; field?: string; file?: string; line?: number } = {}) {
    super(message, { cause: options.cause, retryable: false });
    this.field = options.field;
    this.file = options.file;
    this.line = options.line;
  }
}
