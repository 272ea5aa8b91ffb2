// Walltime: when does this agent's allocation end, and drain a margin before it, so the job checkpoints and
// resumes elsewhere instead of being killed mid-step. The end comes from the scheduler's environment (Slurm's
// SLURM_JOB_END_TIME, Torque's PBS_WALLTIME) or from what the job script exported (PE_ARENA_JOB_START plus
// PE_ARENA_WALLTIME_S, or PE_ARENA_WALLTIME_END); the margin from PE_ARENA_WALLTIME_MARGIN_S.
//
// Two ways in: runAgent can call armWalltimeDrain(... onDrain: (reason) => agent.drain(reason, true)); until it
// does, job scripts load this file with `--import` and PE_ARENA_WALLTIME_PRELOAD=1, which drains the agent through
// its own SIGTERM handler at the margin.
import { isMainThread } from 'node:worker_threads';

export const WALLTIME_ENV = {
  slurmEnd: 'SLURM_JOB_END_TIME',
  end: 'PE_ARENA_WALLTIME_END',
  start: 'PE_ARENA_JOB_START',
  seconds: 'PE_ARENA_WALLTIME_S',
  torqueSeconds: 'PBS_WALLTIME',
  margin: 'PE_ARENA_WALLTIME_MARGIN_S',
  preload: 'PE_ARENA_WALLTIME_PRELOAD',
} as const;

export const DEFAULT_WALLTIME_MARGIN_S = 300;

export interface WalltimeDeadline {
  /** When the allocation ends (ms since the epoch). */
  endsAt: number;
  /** When to drain: endsAt minus the margin (never before now). */
  drainAt: number;
  marginMs: number;
  /** Which variables said so, for the log. */
  source: string;
}

type Env = Record<string, string | undefined>;

function seconds(env: Env, name: string): number | undefined {
  const text = env[name]?.trim();
  if (text === undefined || text === '') return undefined;
  // hh:mm:ss also accepted: PBS_WALLTIME is seconds on Torque, but sites wrap it.
  const hms = /^(?:(\d+):)?(\d+):(\d+)$/.exec(text);
  if (hms !== null) return Number(hms[1] ?? 0) * 3600 + Number(hms[2]) * 60 + Number(hms[3]);
  const n = Number(text);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** The deadline from the environment, or undefined when nothing says when the allocation ends. */
export function walltimeDeadline(
  env: Env = process.env,
  now: number = Date.now(),
  marginS?: number,
): WalltimeDeadline | undefined {
  let endsAt: number | undefined;
  let source = '';
  const slurmEnd = seconds(env, WALLTIME_ENV.slurmEnd);
  const end = seconds(env, WALLTIME_ENV.end);
  const start = seconds(env, WALLTIME_ENV.start);
  const wall = seconds(env, WALLTIME_ENV.seconds) ?? seconds(env, WALLTIME_ENV.torqueSeconds);
  if (slurmEnd !== undefined) {
    endsAt = slurmEnd * 1000;
    source = WALLTIME_ENV.slurmEnd;
  } else if (end !== undefined) {
    endsAt = end * 1000;
    source = WALLTIME_ENV.end;
  } else if (wall !== undefined) {
    endsAt = (start === undefined ? now : start * 1000) + wall * 1000;
    source = `${env[WALLTIME_ENV.seconds] !== undefined ? WALLTIME_ENV.seconds : WALLTIME_ENV.torqueSeconds}${start === undefined ? ' from now' : ` + ${WALLTIME_ENV.start}`}`;
  }
  if (endsAt === undefined) return undefined;
  const margin = marginS ?? seconds(env, WALLTIME_ENV.margin) ?? DEFAULT_WALLTIME_MARGIN_S;
  const marginMs = Math.max(0, margin * 1000);
  return { endsAt, drainAt: Math.max(now, endsAt - marginMs), marginMs, source };
}

export interface WalltimeTimer {
  deadline: WalltimeDeadline | undefined;
  cancel(): void;
}

export interface ArmWalltimeOptions {
  env?: Env;
  now?: number;
  marginS?: number;
  /** Called once, at the deadline, with a reason like "walltime: allocation ends at ...". */
  onDrain: (reason: string) => void;
}

// setTimeout holds at most 2^31-1 ms (~24.8 days); longer waits are chained.
const MAX_TIMEOUT = 2 ** 31 - 1;

/** Arm a timer that calls onDrain at the drain point; unref'd, so it never keeps a process alive. */
export function armWalltimeDrain(options: ArmWalltimeOptions): WalltimeTimer {
  const now = options.now ?? Date.now();
  const deadline = walltimeDeadline(options.env ?? process.env, now, options.marginS);
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const wait = (remaining: number): void => {
    if (cancelled) return;
    timer = setTimeout(
      () => {
        const left = (deadline?.drainAt ?? 0) - Date.now();
        if (left > 0) return wait(left);
        options.onDrain(
          `walltime: allocation ends at ${new Date(deadline!.endsAt).toISOString()} (${deadline!.source}); draining ${Math.round(deadline!.marginMs / 1000)} s before`,
        );
      },
      Math.min(MAX_TIMEOUT, Math.max(0, remaining)),
    );
    timer.unref();
  };
  if (deadline !== undefined) wait(deadline.drainAt - now);
  return {
    deadline,
    cancel: () => {
      cancelled = true;
      clearTimeout(timer);
    },
  };
}

/** The --import path: drain through the agent's own SIGTERM handler, whose reason becomes the first argument. */
function preload(): void {
  armWalltimeDrain({
    onDrain: (reason) => {
      process.stderr.write(`pe-arena agent: ${reason}\n`);
      if (process.listenerCount('SIGTERM') > 0) {
        // Listeners get the event's argument as their "signal": the agent drains with reason "walltime".
        process.emit('SIGTERM', 'walltime' as NodeJS.Signals);
      } else {
        process.kill(process.pid, 'SIGTERM');
      }
    },
  });
}

if (isMainThread && process.env[WALLTIME_ENV.preload] === '1') preload();
