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

/**
 * Data-parallel replicas no longer hold the same state (weights, optimizer moments, step or data position): a bug
 * or a corrupted rank. Training on would average gradients of different models, so the job stops, loudly.
 */
export class ReplicaDivergenceError extends TrainError {
  override readonly name = 'ReplicaDivergenceError';
  constructor(
    readonly step: number,
    /** Each rank's state hash (sha256, hex), in rank order. */
    readonly hashes: readonly string[],
    readonly rank: number,
  ) {
    const shown = hashes.map((h, r) => `rank ${r} ${h.slice(0, 16)}`).join(', ');
    const odd = hashes.map((h, r) => (h === hashes[0] ? -1 : r)).filter((r) => r >= 0);
    super(
      `data-parallel replicas diverged at step ${step} (seen by rank ${rank}): ranks ${odd.join(', ')} differ from rank 0 (${shown})`,
      { retryable: false },
    );
  }
}

/** The reducer (the gang's allreduce) returned something other than the sum this step needs: the gang must reform. */
export class GradientExchangeError extends TrainError {
  override readonly name = 'GradientExchangeError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: true });
  }
}

/**
 * The gang this replica trained in ended mid-step (a peer died, or the gang reforms): the step was not applied and
 * the data position is back where it was, so the replica stands at a step boundary, ready for the next generation.
 */
export class GangInterruptedError extends TrainError {
  override readonly name = 'GangInterruptedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, retryable: true });
  }
}
