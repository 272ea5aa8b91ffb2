// One submission to the scheduler: the job script written into launch/ (numbered per run), the qsub/sbatch call,
// and the submission id read from its output. A dry run stops after writing the script.
import { chmodSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../../protocol/code-paths.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import { SchedulerCommandError } from './errors.ts';
import { renderJobScript, submitCommand } from './job-script.ts';
import type { JobScriptInput, SubmissionKind, SubmitCommand } from './job-script.ts';
import type { CommandResult, RunCommand } from './scheduler-command.ts';
import type { SchedulerDialect } from './scheduler-dialect.ts';
import type { LaunchRequest } from './types.ts';

/** Short and unique per run: Torque keeps 15 characters of a job name. */
export function scheduledJobNameFor(runId: string): string {
  return `pea-${runId.replace(/[^A-Za-z0-9]/g, '').slice(-10)}`;
}

/** Script path of submission `number` of the run: launch/<jobName>-s<number>.sh. */
export function scriptPathFor(launchDir: string, jobName: string, number: number): string {
  return join(launchDir, `${jobName}-s${number}.sh`);
}

/** The highest submission number among the job scripts in launch/ (an earlier coordinator's included). */
export function lastScriptNumber(launchDir: string, jobName: string, atLeast: number): number {
  const pattern = new RegExp(`^${jobName}-s(\\d+)\\.sh$`);
  let last = atLeast;
  for (const file of readdirSync(launchDir)) {
    const n = Number(pattern.exec(file)?.[1] ?? 0);
    if (n > last) last = n;
  }
  return last;
}

export interface SubmissionPlan {
  kind: SubmissionKind;
  count: number;
  number: number;
  scriptPath: string;
  script: string;
  command: SubmitCommand;
}

export interface PlanInput {
  profile: ClusterProfile;
  request: LaunchRequest;
  runId: string;
  jobName: string;
  launchDir: string;
  number: number;
  kind: SubmissionKind;
  count: number;
  /** Where pe-arena lives on compute nodes (default: the profile's projectDir, else this checkout). */
  projectDir: string | undefined;
  /** The node binary in the job (default: the profile's node, else this process's). */
  nodeBinary: string | undefined;
}

/** Renders the job script and writes it (executable) into launch/; returns it with the command that submits it. */
export function writeSubmissionScript(plan: PlanInput): SubmissionPlan {
  const { profile, request, number, kind, count } = plan;
  const scriptPath = scriptPathFor(plan.launchDir, plan.jobName, number);
  const projectDir = plan.projectDir ?? profile.projectDir;
  const input: JobScriptInput = {
    profile,
    runId: plan.runId,
    jobName: plan.jobName,
    submission: number,
    kind,
    count,
    coordinator: request.coordinator,
    runDir: resolve(request.runDir),
    launchDir: plan.launchDir,
    agentArgs: request.agentArgs,
    projectDir: projectDir ?? PACKAGE_ROOT,
    nodeBinary: plan.nodeBinary ?? profile.node ?? process.execPath,
  };
  const script = renderJobScript(input, scriptPath);
  writeFileSync(scriptPath, script, { mode: 0o755 });
  chmodSync(scriptPath, 0o755);
  return { kind, count, number, scriptPath, script, command: submitCommand(input, scriptPath) };
}

/**
 * Runs qsub/sbatch for a written script; resolves with the submission id. Throws a SchedulerCommandError with the
 * command's stderr, after telling `onFailed` what went wrong (the launcher records it as submit_failed).
 */
export async function submitScript(
  run: RunCommand,
  dialect: SchedulerDialect,
  plan: SubmissionPlan,
  onFailed: (text: string) => void,
): Promise<string> {
  const cmd = plan.command;
  let result: CommandResult;
  try {
    result = await run(cmd.command, cmd.args, { timeoutMs: 60_000 });
  } catch (error) {
    onFailed(`${cmd.command}: ${(error as Error).message}`);
    throw error;
  }
  if (result.code !== 0) {
    const stderr = result.stderr.trim();
    onFailed(`${cmd.command} exited ${result.code}: ${stderr}`);
    throw new SchedulerCommandError(
      cmd.command,
      result.code,
      stderr,
      `${cmd.command} failed (exit ${result.code}) submitting ${plan.scriptPath}: ${stderr || '(no stderr)'}`,
      { retryable: true },
    );
  }
  try {
    return dialect.parseSubmitId(result.stdout);
  } catch (error) {
    throw new SchedulerCommandError(
      cmd.command,
      0,
      result.stderr,
      `${cmd.command} printed no job id: ${JSON.stringify(result.stdout.slice(0, 200))}`,
      { cause: error },
    );
  }
}
