// `--launcher pbs`: agents as one qsub job array (PBS Pro -J, Torque -t), polled with one `qstat -f -t` call for
// every submission of the run (text form; PBS Pro also keeps finished jobs, -x), and cancelled with qdel. Task ids
// are what qstat -t lists and the job sees as PBS_JOBID (PBS Pro 12[3].server).
import os from 'node:os';
import type { ClusterProfile, DialectName } from '../cluster-profile.ts';
import { ClusterProfileError } from './errors.ts';
import type { CommandResult } from './scheduler-command.ts';
import type { SchedulerDialect, TaskState, TaskStatus } from './scheduler-dialect.ts';
import { SchedulerLauncher } from './scheduler-launcher.ts';
import type { SchedulerLauncherOptions } from './scheduler-launcher.ts';

/** One job of `qstat -f`, attributes flattened to dotted keys (Resource_List.walltime). */
export interface QstatJob {
  id: string;
  attrs: Record<string, string>;
}

function flatten(prefix: string, value: unknown, into: Record<string, string>): void {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(prefix === '' ? k : `${prefix}.${k}`, v, into);
  } else if (value !== undefined && value !== null) {
    into[prefix] = typeof value === 'string' ? value : JSON.stringify(value);
  }
}

/** `qstat -f -F json` (PBS Pro 18+): {"Jobs": {id: {...}}}; "Jobs" is absent when nothing matched. */
export function parseQstatJson(stdout: string): QstatJob[] {
  const text = stdout.trim();
  if (text === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`qstat -F json printed something that is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (typeof raw !== 'object' || raw === null) throw new Error('qstat -F json: expected an object');
  const jobs = (raw as Record<string, unknown>)['Jobs'];
  if (jobs === undefined) return [];
  if (typeof jobs !== 'object' || jobs === null || Array.isArray(jobs))
    throw new Error('qstat -F json: "Jobs" is not an object');
  return Object.entries(jobs).map(([id, value]) => {
    const attrs: Record<string, string> = {};
    flatten('', value, attrs);
    return { id, attrs };
  });
}

/**
 * `qstat -f` text: a "Job Id: <id>" line, then "    key = value" lines; long values continue on lines that start
 * with a tab and hold no " = " (PBS Pro and Torque wrap at 80 columns).
 */
export function parseQstatText(stdout: string): QstatJob[] {
  const jobs: QstatJob[] = [];
  let current: QstatJob | undefined;
  let lastKey: string | undefined;
  for (const line of stdout.split('\n')) {
    const head = /^Job Id:\s*(\S+)/.exec(line);
    if (head !== null) {
      current = { id: head[1]!, attrs: {} };
      jobs.push(current);
      lastKey = undefined;
      continue;
    }
    if (current === undefined || line.trim() === '') continue;
    const kv = /^\s+([A-Za-z_][\w.]*)\s=\s?(.*)$/.exec(line);
    if (kv !== null) {
      lastKey = kv[1]!;
      current.attrs[lastKey] = kv[2]!.trim();
    } else if (lastKey !== undefined && /^\t/.test(line)) {
      current.attrs[lastKey] += line.trim();
    }
  }
  return jobs;
}

/** PBS times: epoch seconds (Torque start_time) or ctime text (PBS Pro stime "Mon Nov 23 14:28:37 2026"). */
export function parsePbsTime(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (/^\d{9,11}$/.test(text)) return Number(text) * 1000;
  const ms = Date.parse(text.replace(/\s+/g, ' '));
  return Number.isFinite(ms) ? ms : undefined;
}

function walltimeSeconds(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(?:(\d+):)?(\d+):(\d+)$/.exec(text.trim());
  if (m === null) return /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

function pbsState(code: string): TaskState {
  switch (code) {
    case 'R':
      return 'running';
    case 'E':
      return 'ending';
    case 'F':
    case 'X':
    case 'C':
      return 'ended';
    default:
      return 'queued'; // Q H W T S U M B: waiting, held, moving or suspended, still the run's
  }
}

/** PBS Pro's substate of a job that qdel ended (92 finished, 93 failed); Torque has no such substate. */
const PBS_SUBSTATE_TERMINATED = '91';

function signalName(n: number): string {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}

/** Our tasks from parsed qstat jobs: the run's job name only, array parents (12[].server) left out. */
export function pbsTasks(jobs: QstatJob[], jobName: string): TaskStatus[] {
  const out: TaskStatus[] = [];
  for (const job of jobs) {
    const a = job.attrs;
    if (a['Job_Name'] !== undefined && a['Job_Name'] !== jobName) continue;
    if (job.id.includes('[]')) continue;
    const rawState = a['job_state'] ?? '?';
    const state = pbsState(rawState);
    const status: TaskStatus = { id: job.id, state, rawState };
    const arrayId =
      a['array_id'] ?? (/^(\d+)\[\d+\](.*)$/.exec(job.id) === null ? undefined : job.id.replace(/\[\d+\]/, '[]'));
    // A plain job's id is its submission's id; the launcher matches those itself (a task number of Slurm's
    // wrapper looks just like one).
    if (arrayId !== undefined) status.submissionId = arrayId;
    const host = a['exec_host']?.split('/')[0];
    if (host !== undefined && host !== '') status.host = host;
    if (state === 'running' || state === 'ending') {
      const startedAt = parsePbsTime(a['stime'] ?? a['start_time']);
      if (startedAt !== undefined) {
        status.startedAt = startedAt;
        const wall = walltimeSeconds(a['Resource_List.walltime']);
        if (wall !== undefined && wall > 0) status.endsAt = startedAt + wall * 1000;
      }
    }
    if (state === 'ended') {
      const text = a['Exit_status'] ?? a['exit_status'];
      const n = text !== undefined && /^-?\d+$/.test(text) ? Number(text) : undefined;
      if (a['substate'] === PBS_SUBSTATE_TERMINATED) {
        // qdel'd (by a user, an admin or preemption): the agent may well have drained and exited 0 on the SIGTERM,
        // but it did not choose to leave, so this is a lost agent, as Slurm's CANCELLED is.
        status.exitCode = null;
        status.signal = n !== undefined && n > 256 ? signalName(n - 256) : 'SIGTERM';
      } else if (n === undefined) {
        status.exitCode = null;
        status.signal = null;
      } else if (n > 256) {
        // PBS reports a job killed by signal s as 256 + s (e.g. 271: SIGTERM from qdel or the walltime).
        status.exitCode = null;
        status.signal = signalName(n - 256);
      } else {
        status.exitCode = n;
        status.signal = null;
      }
    }
    out.push(status);
  }
  return out;
}

export function pbsDialect(dialect: Exclude<DialectName, 'slurm'>): SchedulerDialect {
  return {
    scheduler: 'pbs',
    parseSubmitId(stdout: string): string {
      const line = stdout
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l !== '');
      if (line === undefined || !/^[\w.[\]-]+$/.test(line))
        throw new Error(`no job id in qsub output ${JSON.stringify(stdout.trim().slice(0, 200))}`);
      return line;
    },
    pollCommand(_jobName: string, submissionIds: string[]): { command: string; args: string[] } {
      // -t lists every subjob; PBS Pro's -x keeps finished ones (Torque's -x would mean XML, so not there). Text,
      // not `-F json`: OpenPBS's JSON form lists only the first id's jobs when given several.
      return {
        command: 'qstat',
        args: dialect === 'pbspro' ? ['-f', '-t', '-x', ...submissionIds] : ['-f', '-t', ...submissionIds],
      };
    },
    parsePoll(result: CommandResult, jobName: string): TaskStatus[] {
      const text = result.stdout.trim();
      if (text === '') return [];
      // JSON where a qstat answers in it (asked for with -F json); else the text form of every dialect.
      if (text.startsWith('{')) return pbsTasks(parseQstatJson(text), jobName);
      // Output without a single job record is not an answer (a banner, an error page): it must not read as
      // "every task is gone", which would report each agent lost.
      if (!/^Job Id:/m.test(text))
        throw new Error(`qstat printed no job records: ${JSON.stringify(text.slice(0, 200))}`);
      return pbsTasks(parseQstatText(text), jobName);
    },
    pollFailed(result: CommandResult, parsed: TaskStatus[]): boolean {
      // Unknown ids (purged history) make qstat exit non-zero while it still lists the rest.
      return result.code !== 0 && parsed.length === 0 && !/unknown job id/i.test(result.stderr);
    },
    pollFallback(result: CommandResult): { command: string; args: string[] } | undefined {
      // Every job, filtered by the run's job name afterwards: heavier, but one call all the same.
      return result.code !== 0 && /unknown option|illegal option|invalid option|usage:/i.test(result.stderr)
        ? { command: 'qstat', args: ['-f'] }
        : undefined;
    },
    cancelCommand(ids: string[], force: boolean): { command: string; args: string[] } {
      return {
        command: 'qdel',
        args: force && dialect === 'pbspro' ? ['-W', 'force', ...ids] : force ? ['-p', ...ids] : [...ids],
      };
    },
    taskId(submissionId: string, index: number, count: number): string | undefined {
      if (count === 1) return submissionId;
      return submissionId.includes('[]') ? submissionId.replace('[]', `[${index}]`) : undefined;
    },
  };
}

export class PbsLauncher extends SchedulerLauncher {
  constructor(options: SchedulerLauncherOptions) {
    const p = options.profile;
    if (p.scheduler !== 'pbs' || p.dialect === 'slurm')
      throw new ClusterProfileError(p.file, 'scheduler', `is "${p.scheduler}"; the pbs launcher needs a pbs profile`);
    super(pbsDialect(p.dialect), options);
  }
}

export function createPbsLauncher(
  profile: ClusterProfile,
  options: Omit<SchedulerLauncherOptions, 'profile'> = {},
): PbsLauncher {
  return new PbsLauncher({ ...options, profile });
}
