// Errors of the batch-scheduler launchers (CoordinatorErrors, next to LauncherError) and of site profiles (a
// ConfigFileError, like an experiment's). Each sets `name`, takes `cause`, carries `retryable`.
import { ConfigFileError } from '../../protocol/config-file.ts';
import { CoordinatorError } from '../errors.ts';

/** A site profile (configs/clusters/*.json) that cannot be used; the message names the file and the field. */
export class ClusterProfileError extends ConfigFileError {
  override readonly name = 'ClusterProfileError';
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
