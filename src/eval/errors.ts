// Errors of the evaluation layer. Scoring never throws on a bad prediction (that is a wrong answer);
// these are for callers that pass inconsistent inputs.
import { PeArenaError } from '../../protocol/errors.ts';

export class EvalError extends PeArenaError {
  override readonly name = 'EvalError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause, retryable: false });
  }
}
