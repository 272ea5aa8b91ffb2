// Errors of the evaluation layer. Scoring never throws on a bad prediction (that is a wrong answer);
// these are for callers that pass inconsistent inputs.
export class EvalError extends Error {
  override readonly name = 'EvalError';
  readonly retryable = false;
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}
