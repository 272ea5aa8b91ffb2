// What the PBS and Slurm launchers share: running scheduler commands (execFile, argument arrays, stderr kept),
// one job array per submission, one batched poll every few seconds, exit reports (the third failure signal),
// capped replacements for lost agents, continuations before an agent's walltime runs out, cancelling queued
// extras the run no longer needs, and cancelling everything on stop. A dialect (slurm.ts, pbs.ts) supplies the
// commands and the parsers; everything else lives here.
import { execFile, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../../protocol/clock.ts';
import type { Clock, TimerHandle } from '../../protocol/clock.ts';
import type { SchedulerTaskStatus } from '../../protocol/messages.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import { SchedulerCommandError } from './errors.ts';
import { renderJobScript, submitCommand } from './job-script.ts';
import type { JobScriptInput, SubmissionKind, SubmitCommand } from './job-script.ts';
import type { AgentExit, Launcher, LaunchRequest } from './types.ts';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed by a signal (e.g. the timeout). */
  code: number | null;
}

/** Runs one scheduler command; resolves on any exit status, rejects only when it cannot start (e.g. not on PATH). */
export type RunCommand = (command: string, args: string[], options?: { timeoutMs?: number }) => Promise<CommandResult>;

/** execFile with an argument array: no shell ever sees a value from the profile or the run. */
export const execCommand: RunCommand = (command, args, options = {}) =>
  new Promise((resolvePromise, reject) => {
    execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
        if (err !== null && typeof err.code === 'string') {
          reject(
            new SchedulerCommandError(
              command,
              null,
              String(stderr),
              `${command} cannot run: ${err.code === 'ENOENT' ? 'not found on PATH' : err.message}`,
              {
                cause: error,
                retryable: err.code !== 'ENOENT',
              },
            ),
          );
          return;
        }
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolvePromise({ stdout: String(stdout), stderr: String(stderr), code });
      },
    );
  });

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

export const LAUNCHER_EVENT = {
  submitted: 'submitted',
  submitFailed: 'submit_failed',
  queued: 'queued',
  running: 'running',
  ended: 'ended',
  replacement: 'replacement',
  continuation: 'continuation',
  cancelled: 'cancelled',
  pollFailed: 'poll_failed',
  dryRun: 'dry_run',
  adopted: 'adopted',
} as const;
export type LauncherEventKind = (typeof LAUNCHER_EVENT)[keyof typeof LAUNCHER_EVENT];

/** Launcher events for the journal and the view (also appended to runs/<runId>/launch/events.jsonl). */
export interface LauncherEvent {
  at: string;
  kind: LauncherEventKind;
  text: string;
  launcherId?: string;
  submissionId?: string;
  state?: string;
  exitCode?: number | null;
  host?: string;
}

/** What the coordinator journals of a launcher event: the event without its timestamp (the journal stamps it). */
export type LauncherNote = Omit<LauncherEvent, 'at' | 'kind'> & { kind: string };

export interface SchedulerLauncherOptions {
  profile: ClusterProfile;
  /** Write the script and return it through dryRunScript; submit nothing. */
  dryRun?: boolean;
  /**
   * Agents the run can still use (e.g. jobs pending + running). Replacements and continuations are submitted only
   * below it, and queued replacements beyond it are cancelled. Default: the count given to start().
   */
  demand?: () => number;
  run?: RunCommand;
  clock?: Clock;
  /** Poll period; default the profile's pollIntervalS. */
  pollIntervalMs?: number;
  /** Where pe-arena lives on compute nodes (default: the profile's projectDir, else this checkout). */
  projectDir?: string;
  /** The node binary in the job (default: the profile's node, else this process's). */
  nodeBinary?: string;
  log?: (line: string) => void;
}

interface Submission {
  id: string;
  number: number;
  kind: SubmissionKind;
  count: number;
  scriptPath: string;
  cancelled: boolean;
}

interface Task {
  id: string;
  submissionId: string | undefined;
  kind: SubmissionKind;
  state: TaskState;
  rawState: string;
  startedAt: number | undefined;
  endsAt: number | undefined;
  host: string | undefined;
  /** A continuation was submitted for it (or it needs none). */
  continued: boolean;
  reported: boolean;
}

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT_PROJECT_DIR = resolve(here, '..', '..');

/** States in which a clean exit means the agent chose to leave (shutdown, walltime drain): no replacement. */
function cleanExit(status: TaskStatus): boolean {
  return status.exitCode === 0 && (status.signal === undefined || status.signal === null);
}

export class SchedulerLauncher implements Launcher {
  readonly name: string;
  /** The job script of the last dry run (nothing was submitted). */
  dryRunScript: string | undefined;
  private readonly profile: ClusterProfile;
  private readonly run: RunCommand;
  private readonly clock: Clock;
  private readonly log: (line: string) => void;
  private readonly pollIntervalMs: number;
  private readonly listeners: ((exit: AgentExit) => void)[] = [];
  private readonly eventListeners: ((event: LauncherEvent) => void)[] = [];
  private readonly submissions = new Map<string, Submission>();
  private readonly tasks = new Map<string, Task>();
  private request: LaunchRequest | undefined;
  private jobName = '';
  private runId = '';
  private launchDir = '';
  private submissionCount = 0;
  private adoptedCount = 0;
  /** True during the adoption poll at start (see update()). */
  private adopting = false;
  private replacementsUsed = 0;
  private initialCount = 0;
  private pollTimer: TimerHandle | undefined;
  private polling: Promise<void> | undefined;
  private fallbackPoll: SubmitCommand | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  private stopping = false;
  private exitHookInstalled = false;
  private readonly exitHook = (): void => this.cancelAllSync();

  constructor(
    private readonly dialect: SchedulerDialect,
    private readonly options: SchedulerLauncherOptions,
  ) {
    this.name = dialect.scheduler;
    this.profile = options.profile;
    this.run = options.run ?? execCommand;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => undefined);
    this.pollIntervalMs = options.pollIntervalMs ?? this.profile.pollIntervalS * 1000;
  }

  /** The scheduler job name every submission of this run carries. */
  get scheduledJobName(): string {
    return this.jobName;
  }

  /** Ids of everything this run submitted (arrays or plain jobs). */
  submissionIds(): string[] {
    return [...this.submissions.keys()];
  }

  /** Each task as the last poll saw it, in the live status reply. */
  schedulerTasks(): SchedulerTaskStatus[] {
    return this.tasksSnapshot().map(({ endsAt: _endsAt, ...task }) => task);
  }

  /** Each task as the last poll saw it, for `pe-arena status` and the view (scheduler id, state, host). */
  tasksSnapshot(): {
    launcherId: string;
    kind: SubmissionKind;
    state: TaskState;
    schedulerState: string;
    host?: string;
    endsAt?: number;
  }[] {
    return [...this.tasks.values()].map((t) => ({
      launcherId: t.id,
      kind: t.kind,
      state: t.state,
      schedulerState: t.rawState,
      ...(t.host === undefined ? {} : { host: t.host }),
      ...(t.endsAt === undefined ? {} : { endsAt: t.endsAt }),
    }));
  }

  onExit(listener: (exit: AgentExit) => void): void {
    this.listeners.push(listener);
  }

  onEvent(listener: (event: LauncherEvent) => void): void {
    this.eventListeners.push(listener);
  }

  /** Tasks queued or on a node, by what the last poll said (plus submitted ones not seen yet). */
  alive(): number {
    let n = 0;
    const seenPer = new Map<string, number>();
    for (const t of this.tasks.values()) {
      if (t.submissionId !== undefined) seenPer.set(t.submissionId, (seenPer.get(t.submissionId) ?? 0) + 1);
      if (t.state !== 'ended') n++;
    }
    const anyUnattributed = [...this.tasks.values()].some((t) => t.submissionId === undefined);
    if (!anyUnattributed)
      for (const s of this.submissions.values()) if (!s.cancelled) n += Math.max(0, s.count - (seenPer.get(s.id) ?? 0));
    return n;
  }

  async start(request: LaunchRequest): Promise<void> {
    if (!Number.isInteger(request.count) || request.count < 1)
      throw new SchedulerCommandError(
        'start',
        null,
        '',
        `agent count must be a positive integer, got ${request.count}`,
      );
    this.request = request;
    this.initialCount = request.count;
    this.runId = basename(resolve(request.runDir));
    // Short and unique per run: Torque keeps 15 characters of a job name.
    this.jobName = `pea-${this.runId.replace(/[^A-Za-z0-9]/g, '').slice(-10)}`;
    this.launchDir = join(resolve(request.runDir), 'launch');
    mkdirSync(this.launchDir, { recursive: true });
    mkdirSync(join(resolve(request.runDir), 'logs', 'agents'), { recursive: true });
    const adopt = this.options.dryRun === true ? [] : (request.adopt ?? []).filter((id) => id !== '');
    if (adopt.length > 0) {
      // A resumed run: numbering goes on after the earlier coordinator's scripts, and its live tasks count.
      this.submissionCount = this.lastScriptNumber();
      this.adoptedCount = await this.adopt(adopt);
      if (request.count > this.adoptedCount) await this.submit('initial', request.count - this.adoptedCount);
    } else {
      await this.submit('initial', request.count);
    }
    if (this.options.dryRun === true) return;
    if (!this.exitHookInstalled) {
      // On a crash or process.exit, cancel synchronously: nothing of the run may stay in the queue.
      process.on('exit', this.exitHook);
      this.exitHookInstalled = true;
    }
    this.pollTimer = this.clock.setInterval(() => void this.pollNow(), this.pollIntervalMs);
  }

  /** Queued or running tasks taken over from an earlier coordinator of the run at start (0 for a fresh run). */
  get adopted(): number {
    return this.adoptedCount;
  }

  /**
   * Takes over the submissions an earlier coordinator of this run made: one poll says which of their tasks are
   * still queued or running; those are tracked from now on like our own (exit reports, replacement, cancel at the
   * end). Returns how many there are.
   */
  private async adopt(ids: string[]): Promise<number> {
    for (const id of ids) {
      if (!this.submissions.has(id))
        this.submissions.set(id, { id, number: 0, kind: 'initial', count: 0, scriptPath: '', cancelled: false });
    }
    this.adopting = true;
    try {
      await this.pollNow();
    } finally {
      this.adopting = false;
    }
    let live = 0;
    for (const id of ids) {
      const tasks = [...this.tasks.values()].filter((t) => t.submissionId === id);
      const open = tasks.filter((t) => t.state !== 'ended').length;
      if (open === 0) {
        // Nothing of it left to poll, replace or cancel (and PBS's qstat fails on an id that has aged out).
        this.submissions.delete(id);
        for (const t of tasks) this.tasks.delete(t.id);
        continue;
      }
      // What the scheduler still lists is all there is of it now (ended tasks may have been purged).
      this.submissions.get(id)!.count = tasks.length;
      live += open;
    }
    this.emit({
      kind: 'adopted',
      text: `took over ${live} queued or running agent(s) from an earlier coordinator (submissions ${ids.join(', ')})`,
    });
    return live;
  }

  /** The highest submission number among the job scripts in launch/ (an earlier coordinator's included). */
  private lastScriptNumber(): number {
    const pattern = new RegExp(`^${this.jobName}-s(\\d+)\\.sh$`);
    let last = this.submissionCount;
    for (const file of readdirSync(this.launchDir)) {
      const n = Number(pattern.exec(file)?.[1] ?? 0);
      if (n > last) last = n;
    }
    return last;
  }

  /** Submit `count` agents as one array; returns the submission id ('' on a dry run). Throws with qsub/sbatch's stderr. */
  async submit(kind: SubmissionKind, count: number): Promise<string> {
    const request = this.request;
    if (request === undefined) throw new SchedulerCommandError('submit', null, '', 'start() was not called');
    const number = ++this.submissionCount;
    const scriptPath = join(this.launchDir, `${this.jobName}-s${number}.sh`);
    const input: JobScriptInput = {
      profile: this.profile,
      runId: this.runId,
      jobName: this.jobName,
      submission: number,
      kind,
      count,
      coordinator: request.coordinator,
      runDir: resolve(request.runDir),
      launchDir: this.launchDir,
      agentArgs: request.agentArgs,
      projectDir: this.options.projectDir ?? this.profile.projectDir ?? DEFAULT_PROJECT_DIR,
      nodeBinary: this.options.nodeBinary ?? this.profile.node ?? process.execPath,
      tsxLoader:
        (this.options.projectDir ?? this.profile.projectDir)
          ? `${this.options.projectDir ?? this.profile.projectDir}/node_modules/tsx/dist/loader.mjs`
          : import.meta.resolve('tsx'),
    };
    const script = renderJobScript(input, scriptPath);
    writeFileSync(scriptPath, script, { mode: 0o755 });
    chmodSync(scriptPath, 0o755);
    const cmd = submitCommand(input, scriptPath);
    if (this.options.dryRun === true) {
      this.dryRunScript = script;
      this.emit({
        kind: 'dry_run',
        text: `dry run: wrote ${scriptPath}; would run ${cmd.command} ${cmd.args.join(' ')}`,
      });
      return '';
    }
    let result: CommandResult;
    try {
      result = await this.run(cmd.command, cmd.args, { timeoutMs: 60_000 });
    } catch (error) {
      this.emit({ kind: 'submit_failed', text: `${cmd.command}: ${(error as Error).message}` });
      throw error;
    }
    if (result.code !== 0) {
      const stderr = result.stderr.trim();
      this.emit({ kind: 'submit_failed', text: `${cmd.command} exited ${result.code}: ${stderr}` });
      throw new SchedulerCommandError(
        cmd.command,
        result.code,
        stderr,
        `${cmd.command} failed (exit ${result.code}) submitting ${scriptPath}: ${stderr || '(no stderr)'}`,
        { retryable: true },
      );
    }
    let id: string;
    try {
      id = this.dialect.parseSubmitId(result.stdout);
    } catch (error) {
      throw new SchedulerCommandError(
        cmd.command,
        0,
        result.stderr,
        `${cmd.command} printed no job id: ${JSON.stringify(result.stdout.slice(0, 200))}`,
        { cause: error },
      );
    }
    this.submissions.set(id, { id, number, kind, count, scriptPath, cancelled: false });
    this.emit({
      kind: 'submitted',
      submissionId: id,
      text: `${kind} submission ${number}: ${count} agent(s) as ${id} (${scriptPath})`,
    });
    return id;
  }

  /** One batched poll; safe to call any time (concurrent calls share one). Never throws. */
  pollNow(): Promise<void> {
    if (this.polling !== undefined) return this.polling;
    this.polling = this.pollOnce()
      .catch((error: unknown) => this.emit({ kind: 'poll_failed', text: `poll failed: ${(error as Error).message}` }))
      .finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    if (this.submissions.size === 0) return;
    let cmd = this.fallbackPoll ?? this.dialect.pollCommand(this.jobName, [...this.submissions.keys()]);
    let result = await this.run(cmd.command, cmd.args, { timeoutMs: 30_000 });
    const fallback = this.fallbackPoll === undefined ? this.dialect.pollFallback?.(result) : undefined;
    if (fallback !== undefined) {
      this.fallbackPoll = fallback;
      this.emit({
        kind: 'poll_failed',
        text: `${cmd.command} ${cmd.args.slice(0, 5).join(' ')} is refused here (${result.stderr.trim().split('\n')[0] ?? ''}); polling with ${fallback.command} ${fallback.args.join(' ')} from now on`,
      });
      cmd = fallback;
      result = await this.run(cmd.command, cmd.args, { timeoutMs: 30_000 });
    }
    const statuses = this.dialect.parsePoll(result, this.jobName);
    if (this.dialect.pollFailed(result, statuses)) {
      // A scheduler that did not answer says nothing about our jobs: keep the last known state.
      this.emit({
        kind: 'poll_failed',
        text: `${cmd.command} exited ${result.code}: ${result.stderr.trim().slice(0, 500)}`,
      });
      return;
    }
    const now = this.clock.now();
    const seen = new Set<string>();
    for (const status of statuses) {
      if (status.submissionId !== undefined && !this.submissions.has(status.submissionId)) continue;
      seen.add(status.id);
      this.update(status, now);
    }
    // A task we saw before and the scheduler no longer lists is gone (ended and purged, or deleted).
    for (const task of this.tasks.values()) {
      if (task.state !== 'ended' && !seen.has(task.id))
        this.update({ id: task.id, state: 'ended', rawState: 'GONE', exitCode: null, signal: null }, now);
    }
    if (!this.stopping) {
      this.continueBeforeWalltime(now);
      await this.trimQueued();
    }
    this.writeSnapshot();
  }

  /** launch/tasks.json: each task's scheduler state, for `pe-arena status <runDir>` (written whole, then renamed). */
  private writeSnapshot(): void {
    if (this.launchDir === '') return;
    const file = join(this.launchDir, 'tasks.json');
    try {
      writeFileSync(
        `${file}.tmp`,
        JSON.stringify(
          { at: new Date(this.clock.now()).toISOString(), jobName: this.jobName, tasks: this.tasksSnapshot() },
          null,
          2,
        ) + '\n',
      );
      renameSync(`${file}.tmp`, file);
    } catch (error) {
      this.log(`cannot write ${file}: ${(error as Error).message}`);
    }
  }

  private update(status: TaskStatus, now: number): void {
    let task = this.tasks.get(status.id);
    if (task === undefined) {
      const submissionId = status.submissionId ?? (this.submissions.has(status.id) ? status.id : undefined);
      const sub = submissionId === undefined ? undefined : this.submissions.get(submissionId);
      task = {
        id: status.id,
        submissionId,
        kind: sub?.kind ?? 'initial',
        state: 'queued',
        rawState: '',
        startedAt: undefined,
        endsAt: undefined,
        host: undefined,
        continued: false,
        reported: false,
      };
      this.tasks.set(status.id, task);
      if (status.state === 'queued')
        this.emit({
          kind: 'queued',
          launcherId: status.id,
          ...(status.submissionId === undefined ? {} : { submissionId: status.submissionId }),
          state: status.rawState,
          text: `${status.id} queued (${status.rawState})`,
        });
    }
    const before = task.state;
    if (before === 'ended') return;
    if (this.adopting && before === 'queued' && status.state === 'ended') {
      // Ended under the earlier coordinator: neither reported nor replaced (adopt() counts what is still alive).
      task.state = 'ended';
      task.rawState = status.rawState;
      task.reported = true;
      return;
    }
    task.state = status.state;
    task.rawState = status.rawState;
    if (status.host !== undefined) task.host = status.host;
    if (status.state === 'running' || status.state === 'ending') {
      task.startedAt = status.startedAt ?? task.startedAt ?? now;
      if (status.endsAt !== undefined) task.endsAt = status.endsAt;
    }
    if (before !== 'running' && status.state === 'running') {
      this.emit({
        kind: 'running',
        launcherId: task.id,
        state: status.rawState,
        ...(task.host === undefined ? {} : { host: task.host }),
        text: `${task.id} running${task.host === undefined ? '' : ` on ${task.host}`}`,
      });
    }
    if (status.state === 'ended') this.ended(task, status);
  }

  private ended(task: Task, status: TaskStatus): void {
    const code = status.exitCode ?? null;
    const signal = status.signal ?? null;
    this.emit({
      kind: 'ended',
      launcherId: task.id,
      state: status.rawState,
      exitCode: code,
      text: `${task.id} ended: ${status.rawState}${code === null ? '' : ` exit ${code}`}${signal === null ? '' : ` (${signal})`}`,
    });
    if (!task.reported) {
      task.reported = true;
      for (const listener of this.listeners) {
        try {
          // pid 0: a batch task's process id is not known here; launcherId says which agent it was.
          listener({ pid: 0, launcherId: task.id, code, signal });
        } catch (error) {
          this.log(`exit listener failed: ${(error as Error).message}`);
        }
      }
    }
    if (this.stopping || cleanExit(status)) return;
    if (this.replacementsUsed >= this.profile.maxReplacements) {
      this.emit({
        kind: 'replacement',
        launcherId: task.id,
        text: `not replacing ${task.id}: the cap of ${this.profile.maxReplacements} replacements is used up`,
      });
      return;
    }
    if (this.activeNotContinued() >= this.demand()) return;
    this.replacementsUsed++;
    this.background(this.submit('replacement', 1)).then(
      (id) =>
        this.emit({
          kind: 'replacement',
          launcherId: task.id,
          submissionId: id,
          text: `replacing lost ${task.id} with ${id} (${this.replacementsUsed}/${this.profile.maxReplacements})`,
        }),
      () => undefined, // submit already recorded submit_failed with the stderr
    );
  }

  /** Track a submission made from a poll, so stop() can wait for it. */
  private background<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = (): void => void this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  private demand(): number {
    const d = this.options.demand?.() ?? this.initialCount;
    return Number.isFinite(d) ? Math.max(0, Math.floor(d)) : this.initialCount;
  }

  /** Agents that will still be there after the ones already continued leave. */
  private activeNotContinued(): number {
    let continuedAlive = 0;
    for (const t of this.tasks.values()) if (t.state !== 'ended' && t.continued) continuedAlive++;
    return this.alive() - continuedAlive;
  }

  /** Submit a continuation for each running agent whose walltime ends within the lead time. */
  private continueBeforeWalltime(now: number): void {
    const leadMs = this.profile.continuationLeadS * 1000;
    for (const task of this.tasks.values()) {
      if (task.state !== 'running' || task.continued || task.startedAt === undefined) continue;
      const endsAt = task.endsAt ?? task.startedAt + this.profile.walltimeS * 1000;
      if (now < endsAt - leadMs) continue;
      task.continued = true;
      if (this.activeNotContinued() >= this.demand()) continue;
      this.background(this.submit('continuation', 1)).then(
        (id) =>
          this.emit({
            kind: 'continuation',
            launcherId: task.id,
            submissionId: id,
            text: `${task.id} reaches its walltime at ${new Date(endsAt).toISOString()}; continuation ${id} submitted`,
          }),
        () => undefined,
      );
    }
  }

  /** Cancel queued replacement/continuation tasks beyond what the run can use, newest first. */
  private async trimQueued(): Promise<void> {
    let excess = this.activeNotContinued() - this.demand();
    if (excess <= 0) return;
    const queued = [...this.submissions.values()]
      .filter((s) => !s.cancelled && s.kind !== 'initial')
      .filter((s) => {
        const tasks = [...this.tasks.values()].filter((t) => t.submissionId === s.id);
        return tasks.length > 0 && tasks.every((t) => t.state === 'queued');
      })
      .sort((a, b) => b.number - a.number);
    const ids: string[] = [];
    for (const s of queued) {
      if (excess <= 0) break;
      s.cancelled = true;
      excess -= s.count;
      ids.push(s.id);
    }
    if (ids.length === 0) return;
    await this.cancel(ids, false);
    this.emit({ kind: 'cancelled', text: `cancelled queued ${ids.join(', ')}: the run no longer needs them` });
  }

  private async cancel(ids: string[], force: boolean): Promise<void> {
    if (ids.length === 0) return;
    const cmd = this.dialect.cancelCommand(ids, force);
    try {
      const result = await this.run(cmd.command, cmd.args, { timeoutMs: 30_000 });
      if (result.code !== 0)
        this.log(`${cmd.command} ${cmd.args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
    } catch (error) {
      this.log(`${cmd.command} failed: ${(error as Error).message}`);
    }
  }

  /** Cancel everything the run submitted, wait (bounded) until the scheduler holds none of it. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.clock.clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    await this.polling;
    // A replacement submitted just now must be in the list to cancel.
    await Promise.allSettled([...this.inFlight]);
    const ids = [...this.submissions.keys()];
    if (ids.length > 0) {
      for (const s of this.submissions.values()) s.cancelled = true;
      await this.cancel(ids, false);
      this.emit({ kind: 'cancelled', text: `stop: cancelled ${ids.join(', ')}` });
      const started = Date.now();
      let forced = false;
      // Wall-clock bound: a scheduler that never answers must not hang shutdown.
      while (Date.now() - started < graceMs + 20_000) {
        await this.pollNow();
        if (this.alive() === 0) break;
        if (!forced && Date.now() - started >= graceMs) {
          forced = true;
          await this.cancel(ids, true);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (this.exitHookInstalled) {
      process.off('exit', this.exitHook);
      this.exitHookInstalled = false;
    }
  }

  private cancelAllSync(): void {
    const ids = [...this.submissions.values()].filter((s) => !s.cancelled).map((s) => s.id);
    if (ids.length === 0) return;
    const cmd = this.dialect.cancelCommand(ids, false);
    spawnSync(cmd.command, cmd.args, { timeout: 5_000, stdio: 'ignore' });
  }

  private emit(event: Omit<LauncherEvent, 'at'>): void {
    const full: LauncherEvent = { at: new Date(this.clock.now()).toISOString(), ...event };
    this.log(full.text);
    if (this.launchDir !== '') {
      try {
        appendFileSync(join(this.launchDir, 'events.jsonl'), JSON.stringify(full) + '\n');
      } catch {
        // The run directory went away; the listeners still hear it.
      }
    }
    for (const listener of this.eventListeners) {
      try {
        listener(full);
      } catch (error) {
        this.log(`event listener failed: ${(error as Error).message}`);
      }
    }
  }
}
