// Errors of the batch-scheduler launchers and site profiles (CoordinatorErrors, next to LauncherError). Each sets
// `name`, takes `cause`, carries `retryable`.
import { CoordinatorError } from '../errors.ts';

/** A site profile (configs/clusters/*.json) that cannot be used; the message names the file and the field. */
export class ClusterProfileError extends CoordinatorError {
  override readonly name = 'ClusterProfileError';
  constructor(
    readonly file: string,
    readonly field: string,
    problem: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${file}: ${field === '' ? '' : `${field} `}${problem}`, options);
  }
}

/** qsub/sbatch/qstat/squeue/qdel/scancel failed or is missing; the message carries the command and its stderr. */
export class SchedulerCommandError extends CoordinatorError {
  override readonly name = 'SchedulerCommandError';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    message: string,
    options: { cause?: unknown; retryable?: boolean } = {},
  ) {
    super(message, options);
  }
}
