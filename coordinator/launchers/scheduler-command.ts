// Running the scheduler's commands (qsub/sbatch, qstat/squeue, qdel/scancel) and doctor's probes: execFile with an
// argument array (no shell ever sees a value from the profile or the run), a timeout, and stderr kept.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { SchedulerCommandError } from './errors.ts';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed by a signal (e.g. the timeout). */
  code: number | null;
}

/** Runs one scheduler command; resolves on any exit status, rejects only when it cannot start (e.g. not on PATH). */
export type RunCommand = (command: string, args: string[], options?: { timeoutMs?: number }) => Promise<CommandResult>;

export interface ProcessOutcome extends CommandResult {
  /** Why the command could not start (ENOENT: not on PATH), with the system's message; absent when it ran. */
  startError?: { code: string; message: string; error: Error };
}

export interface ProcessOptions {
  timeoutMs: number;
  cwd?: string;
  maxBuffer?: number;
}

/** execFile that never rejects: the exit status, the output, and whether it could start at all. */
export function runProcess(command: string, args: string[], options: ProcessOptions): Promise<ProcessOutcome> {
  return new Promise((resolvePromise) => {
    execFile(
      command,
      args,
      {
        timeout: options.timeoutMs,
        maxBuffer: options.maxBuffer ?? 64 * 1024 * 1024,
        encoding: 'utf8',
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      },
      (error, stdout, stderr) => {
        const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
        const result: ProcessOutcome = {
          stdout: String(stdout),
          stderr: String(stderr),
          code: err === null ? 0 : typeof err.code === 'number' ? err.code : null,
        };
        if (err !== null && typeof err.code === 'string')
          result.startError = { code: err.code, message: err.message, error: err };
        resolvePromise(result);
      },
    );
  });
}

/** The launchers' RunCommand: a command that cannot start is a SchedulerCommandError (retryable unless missing). */
export const execCommand: RunCommand = async (command, args, options = {}) => {
  const { startError, ...result } = await runProcess(command, args, { timeoutMs: options.timeoutMs ?? 60_000 });
  if (startError !== undefined)
    throw new SchedulerCommandError(
      command,
      null,
      result.stderr,
      `${command} cannot run: ${startError.code === 'ENOENT' ? (command.includes('/') ? 'not found' : 'not found on PATH') : startError.message}`,
      { cause: startError.error, retryable: startError.code !== 'ENOENT' },
    );
  return result;
};

/** A scheduler command as the profile places it: a bare name under its commandsDir, or left to PATH without one. */
export function schedulerCommandPath(commandsDir: string | undefined, command: string): string {
  return commandsDir === undefined || command.includes('/') ? command : join(commandsDir, command);
}

/** `run` with every bare command name looked up in commandsDir (e.g. /opt/pbs/bin) instead of PATH. */
export function inCommandsDir(run: RunCommand, commandsDir: string | undefined): RunCommand {
  if (commandsDir === undefined) return run;
  return (command, args, options) => run(schedulerCommandPath(commandsDir, command), args, options);
}
