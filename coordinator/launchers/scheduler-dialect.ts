// What a scheduler (slurm.ts, pbs.ts) supplies to the shared batch launcher: its commands and the parsers of their
// output, in normalised task states. Everything else (polling, replacement, continuation, cancel) is shared.
import type { CommandResult } from './scheduler-command.ts';
import type { SubmitCommand } from './job-script.ts';

/** Normalised task states; `ending` is still on the machine (PBS E, Slurm COMPLETING). */
export const TASK_STATE = { queued: 'queued', running: 'running', ending: 'ending', ended: 'ended' } as const;
export type TaskState = (typeof TASK_STATE)[keyof typeof TASK_STATE];

export interface TaskStatus {
  /** The id the agent reports as hello.launcherId (Slurm 12_3, PBS Pro 12[3].server). */
  id: string;
  /** The submission (array) it belongs to, when the scheduler says. */
  submissionId?: string;
  state: TaskState;
  /** The scheduler's own word for the state (RUNNING, CANCELLED, Q, F, ...). */
  rawState: string;
  exitCode?: number | null;
  signal?: string | null;
  startedAt?: number;
  endsAt?: number;
  host?: string;
}

export interface SchedulerDialect {
  readonly scheduler: 'pbs' | 'slurm';
  /** The submission id from qsub/sbatch stdout; throws when there is none. */
  parseSubmitId(stdout: string): string;
  /** One batched status call for every submission of the run. */
  pollCommand(jobName: string, submissionIds: string[]): SubmitCommand;
  /** Our tasks from the poll's output (array parents left out). */
  parsePoll(result: CommandResult, jobName: string): TaskStatus[];
  /** Whether a failed poll (non-zero exit) still produced a usable answer. */
  pollFailed(result: CommandResult, parsed: TaskStatus[]): boolean;
  /**
   * When the poll command is refused as such (a qstat without -t or -F json, like Slurm's torque wrapper), the
   * command to use instead from then on; undefined otherwise.
   */
  pollFallback?(result: CommandResult): SubmitCommand | undefined;
  cancelCommand(ids: string[], force: boolean): SubmitCommand;
  /** Id of one task of a submission, when it can be known before the poll sees it. */
  taskId(submissionId: string, index: number, count: number): string | undefined;
}
