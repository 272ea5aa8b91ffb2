// Errors of the coordinator. Each sets `name`, takes `cause`, and says whether retrying can help.
import { PeArenaError } from '../protocol/errors.ts';

export class CoordinatorError extends PeArenaError {
  override readonly name: string = 'CoordinatorError';
}

/** An experiment file that cannot be used; the message names the file and the field. */
export class ExperimentConfigError extends CoordinatorError {
  override readonly name = 'ExperimentConfigError';
  constructor(
    readonly file: string,
    readonly field: string,
    problem: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${file}: ${field === '' ? '' : `${field} `}${problem}`, options);
  }
}

/** A checkpoint upload that cannot be accepted (missing chunks, wrong size or sha256); the agent sends it again. */
export class CheckpointRejectedError extends CoordinatorError {
  override readonly name = 'CheckpointRejectedError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: true });
  }
}

/** The journal or run directory cannot be read back (e.g. `--resume` on something that is not a run). */
export class RunDirectoryError extends CoordinatorError {
  override readonly name = 'RunDirectoryError';
}

export class LauncherError extends CoordinatorError {
  override readonly name = 'LauncherError';
}
