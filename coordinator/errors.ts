// Errors of the coordinator. Each sets `name`, takes `cause`, and says whether retrying can help.
import { ConfigFileError } from '../protocol/config-file.ts';
import { PeArenaError } from '../protocol/errors.ts';

export class CoordinatorError extends PeArenaError {
  override readonly name: string = 'CoordinatorError';
}

/** An experiment file that cannot be used; the message names the file and the field (or line and column). */
export class ExperimentConfigError extends ConfigFileError {
  override readonly name = 'ExperimentConfigError';
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
