// Errors of the training layer. Each sets `name`, takes `cause`, and says whether retrying can help:
// the coordinator fails a job at once on a non-retryable error instead of burning retries.
import { PeArenaError } from '../../protocol/errors.ts';

export class TrainError extends PeArenaError {
  override readonly name: string = 'TrainError';
}

/** A checkpoint that cannot be trusted: bad magic, unknown version, wrong sizes, sha256 mismatch, wrong model. */
export class CheckpointError extends TrainError {
  override readonly name = 'CheckpointError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    // Retrying the same bytes gives the same answer; the caller may fetch another copy.
    super(message, { ...options, retryable: false });
  }
}

/** The loss became NaN or infinite: the run has diverged and another attempt would diverge the same way. */
export class NonFiniteLossError extends TrainError {
  override readonly name = 'NonFiniteLossError';
  constructor(
    readonly step: number,
    readonly loss: number,
  ) {
    super(`loss is ${loss} at step ${step}: training diverged (lower the learning rate or check the data)`, {
      retryable: false,
    });
  }
}

/** A job spec or CLI option that cannot work (unknown preset, sequence longer than maxLen, ...). */
export class TrainConfigError extends TrainError {
  override readonly name = 'TrainConfigError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: false });
  }
}
