// `--launcher slurm`: agents as one sbatch array, polled with one squeue call, cancelled with scancel.
// Task ids are Slurm's array form (12_3, or 12 for a one-task submission): `scancel 12_3` ends exactly that task.
import os from 'node:os';
import type { ClusterProfile } from '../cluster-profile.ts';
import { ClusterProfileError } from './errors.ts';
import type { CommandResult } from './scheduler-command.ts';
import type { SchedulerDialect, TaskState, TaskStatus } from './scheduler-dialect.ts';
import { SchedulerLauncher } from './scheduler-launcher.ts';
import type { SchedulerLauncherOptions } from './scheduler-launcher.ts';

/** squeue --Format fields, '|'-separated (the `:|` suffix is the separator). */
const FIELDS = ['JobArrayID', 'ArrayJobID', 'State', 'exit_code', 'StartTime', 'EndTime', 'NodeList', 'Reason'];
const FORMAT = FIELDS.map((f) => `${f}:|`).join(',');

const QUEUED = new Set([
  'PENDING',
  'CONFIGURING',
  'REQUEUED',
  'REQUEUE_HOLD',
  'REQUEUE_FED',
  'RESV_DEL_HOLD',
  'SUSPENDED',
  'STOPPED',
  'RESIZING',
  'SIGNALING',
  'STAGE_OUT',
  'SPECIAL_EXIT',
]);
const ENDING = new Set(['COMPLETING']);

/** Slurm's local-time stamps (2026-11-23T14:28:37) as ms; undefined for N/A, Unknown, None. */
export function parseSlurmTime(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(text)) return undefined;
  const ms = new Date(text).getTime(); // no offset: read as local time, as slurmctld writes it
  return Number.isFinite(ms) ? ms : undefined;
}

function slurmState(raw: string): TaskState {
  const state = raw.split(/\s+/)[0] ?? raw; // sacct-style "CANCELLED by 0" -> CANCELLED
  if (state === 'RUNNING') return 'running';
  if (QUEUED.has(state)) return 'queued';
  if (ENDING.has(state)) return 'ending';
  return 'ended';
}

/** exit_code is the raw wait status (768: exit 3; 15: SIGTERM), or "code:signal" as sacct writes it. */
function exitOf(state: string, exitCode: string): { exitCode: number | null; signal: string | null } {
  let code: number | null = null;
  let sig = 0;
  const pair = /^(\d+):(\d+)$/.exec(exitCode);
  if (pair !== null) {
    code = Number(pair[1]);
    sig = Number(pair[2]);
  } else if (/^\d+$/.test(exitCode)) {
    const status = Number(exitCode);
    sig = status & 0x7f;
    code = sig === 0 ? status >> 8 : null;
  }
  const name =
    sig > 0 ? (Object.entries(os.constants.signals).find(([, n]) => n === sig)?.[0] ?? `signal ${sig}`) : null;
  if (state === 'CANCELLED' || state === 'PREEMPTED' || state === 'TIMEOUT' || state === 'DEADLINE')
    return { exitCode: null, signal: name ?? 'SIGTERM' };
  if (state === 'NODE_FAIL' || state === 'BOOT_FAIL' || state === 'OUT_OF_MEMORY')
    return { exitCode: null, signal: name ?? 'SIGKILL' };
  if (state === 'COMPLETED') return { exitCode: code ?? 0, signal: null };
  // FAILED and the rest: a failure even when the status reads 0.
  return { exitCode: name !== null ? null : code === null || code === 0 ? 1 : code, signal: name };
}

/** Parse `squeue --noheader --array --Format=<FIELDS>` output. */
export function parseSqueue(stdout: string): TaskStatus[] {
  const out: TaskStatus[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const cols = line.split('|').map((c) => c.trim());
    const [id, arrayJobId, rawState, exitCode, start, end, nodes] = cols;
    if (id === undefined || rawState === undefined || !/^\d+(_\d+)?$/.test(id)) continue; // pending ranges (12_[0-3]) need --array
    const state = slurmState(rawState);
    const status: TaskStatus = {
      id,
      state,
      rawState,
      submissionId: arrayJobId !== undefined && /^\d+$/.test(arrayJobId) ? arrayJobId : id.split('_')[0]!,
    };
    if (state === 'running' || state === 'ending') {
      const startedAt = parseSlurmTime(start ?? '');
      const endsAt = parseSlurmTime(end ?? '');
      if (startedAt !== undefined) status.startedAt = startedAt;
      if (endsAt !== undefined && endsAt > (startedAt ?? 0)) status.endsAt = endsAt;
    }
    if (nodes !== undefined && nodes !== '' && nodes !== '(null)') status.host = nodes;
    if (state === 'ended') Object.assign(status, exitOf(rawState.split(/\s+/)[0] ?? rawState, exitCode ?? ''));
    out.push(status);
  }
  return out;
}

export const slurmDialect: SchedulerDialect = {
  scheduler: 'slurm',
  parseSubmitId(stdout: string): string {
    // --parsable prints "jobid" or "jobid;cluster".
    const m = /^(\d+)(?:;\S+)?$/m.exec(stdout.trim());
    if (m === null) throw new Error(`no job id in sbatch output ${JSON.stringify(stdout.trim().slice(0, 200))}`);
    return m[1]!;
  },
  pollCommand(jobName: string): { command: string; args: string[] } {
    // By name (unique per run) rather than by id: squeue fails the whole call when one id has aged out.
    return {
      command: 'squeue',
      args: [
        '--noheader',
        '--array',
        '--states=all',
        `--name=${jobName}`,
        `--user=${os.userInfo().username}`,
        `--Format=${FORMAT}`,
      ],
    };
  },
  parsePoll(result: CommandResult): TaskStatus[] {
    return parseSqueue(result.stdout);
  },
  pollFailed(result: CommandResult): boolean {
    return result.code !== 0;
  },
  cancelCommand(ids: string[], force: boolean): { command: string; args: string[] } {
    return { command: 'scancel', args: force ? ['--signal=KILL', '--full', ...ids] : [...ids] };
  },
  taskId(submissionId: string, index: number, count: number): string | undefined {
    return count > 1 ? `${submissionId}_${index}` : submissionId;
  },
};

export class SlurmLauncher extends SchedulerLauncher {
  constructor(options: SchedulerLauncherOptions) {
    if (options.profile.scheduler !== 'slurm')
      throw new ClusterProfileError(
        options.profile.file,
        'scheduler',
        `is "${options.profile.scheduler}"; the slurm launcher needs a slurm profile`,
      );
    super(slurmDialect, options);
  }
}

export function createSlurmLauncher(
  profile: ClusterProfile,
  options: Omit<SchedulerLauncherOptions, 'profile'> = {},
): SlurmLauncher {
  return new SlurmLauncher({ ...options, profile });
}
