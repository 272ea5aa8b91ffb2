// The batch launcher PBS and Slurm share: one job array per submission, batched polls (fewer while nothing changes:
// poll-schedule.ts), exit reports (the third failure signal), capped replacements for lost agents, continuations
// before an agent's walltime runs out, cancelling queued extras the run no longer needs, and cancelling everything on
// stop. A dialect (slurm.ts, pbs.ts) supplies the commands and the parsers; commands run through
// scheduler-command.ts, scripts are written by job-submission.ts, and task-table.ts keeps what the polls said. Every
// timer is on the injected clock.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { systemClock } from '../../protocol/clock.ts';
import type { Clock } from '../../protocol/clock.ts';
import type { SchedulerTaskStatus } from '../../protocol/messages.ts';
import type { ClusterProfile } from '../cluster-profile.ts';
import { SchedulerCommandError } from './errors.ts';
import type { SubmissionKind, SubmitCommand } from './job-script.ts';
import { lastScriptNumber, scheduledJobNameFor, submitScript, writeSubmissionScript } from './job-submission.ts';
import { LauncherEventLog } from './launcher-events.ts';
import type { LauncherEvent } from './launcher-events.ts';
import { PollSchedule } from './poll-schedule.ts';
import { execCommand, inCommandsDir, schedulerCommandPath } from './scheduler-command.ts';
import type { RunCommand } from './scheduler-command.ts';
import type { SchedulerDialect, TaskStatus } from './scheduler-dialect.ts';
import { TaskTable, writeTasksFile } from './task-table.ts';
import type { Task, TaskChange, TaskSnapshot } from './task-table.ts';
import type { AgentExit, Launcher, LaunchRequest } from './types.ts';

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
  /** Polls and stop()'s wait run on it (default: the system clock); a test drives them with a SimulatedClock. */
  clock?: Clock;
  /** The base (and shortest) wait between polls; default the profile's pollIntervalS. */
  pollIntervalMs?: number;
  /** The longest wait between polls of a queue that stands still; default the profile's pollMaxIntervalS. */
  pollMaxIntervalMs?: number;
  /** Where pe-arena lives on compute nodes (default: the profile's projectDir, else this checkout). */
  projectDir?: string;
  /** The node binary in the job (default: the profile's node, else this process's). */
  nodeBinary?: string;
  log?: (line: string) => void;
}

/** Between two polls of stop()'s wait for the queue to empty. */
const STOP_POLL_MS = 500;
/** How long stop() waits past the grace period for a scheduler that never answers: shutdown must not hang. */
const STOP_BOUND_AFTER_GRACE_MS = 20_000;

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
  private readonly polls: PollSchedule;
  private readonly listeners: ((exit: AgentExit) => void)[] = [];
  private readonly events: LauncherEventLog;
  private readonly table = new TaskTable();
  private request: LaunchRequest | undefined;
  private jobName = '';
  private runId = '';
  private launchDir = '';
  private submissionCount = 0;
  private adoptedCount = 0;
  /** True during the adoption poll at start (see TaskTable.apply). */
  private adopting = false;
  private replacementsUsed = 0;
  private initialCount = 0;
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
    this.run = inCommandsDir(options.run ?? execCommand, this.profile.commandsDir);
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => undefined);
    const baseMs = options.pollIntervalMs ?? this.profile.pollIntervalS * 1000;
    const maxMs = Math.max(baseMs, options.pollMaxIntervalMs ?? this.profile.pollMaxIntervalS * 1000);
    this.polls = new PollSchedule(this.clock, baseMs, maxMs, () => void this.pollNow());
    this.events = new LauncherEventLog(this.clock, this.log);
  }

  /** The scheduler job name every submission of this run carries. */
  get scheduledJobName(): string {
    return this.jobName;
  }

  /** Ids of everything this run submitted (arrays or plain jobs). */
  submissionIds(): string[] {
    return [...this.table.submissions.keys()];
  }

  /** Each task as the last poll saw it, in the live status reply. */
  schedulerTasks(): SchedulerTaskStatus[] {
    return this.tasksSnapshot().map(({ endsAt: _endsAt, ...task }) => task);
  }

  /** Each task as the last poll saw it, for `pe-arena status` and the view (scheduler id, state, host). */
  tasksSnapshot(): TaskSnapshot[] {
    return this.table.snapshot();
  }

  onExit(listener: (exit: AgentExit) => void): void {
    this.listeners.push(listener);
  }

  onEvent(listener: (event: LauncherEvent) => void): void {
    this.events.onEvent(listener);
  }

  /** Tasks queued or on a node, by what the last poll said (plus submitted ones not seen yet). */
  alive(): number {
    return this.table.alive();
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
    this.jobName = scheduledJobNameFor(this.runId);
    this.launchDir = join(resolve(request.runDir), 'launch');
    this.events.launchDir = this.launchDir;
    mkdirSync(this.launchDir, { recursive: true });
    mkdirSync(join(resolve(request.runDir), 'logs', 'agents'), { recursive: true });
    const adopt = this.options.dryRun === true ? [] : (request.adopt ?? []).filter((id) => id !== '');
    if (adopt.length > 0) {
      // A resumed run: numbering goes on after the earlier coordinator's scripts, and its live tasks count.
      this.submissionCount = lastScriptNumber(this.launchDir, this.jobName, this.submissionCount);
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
    this.polls.start();
  }

  /**
   * Poll now and go back to the base pace: the coordinator calls it when an agent is lost or leaves, so that its
   * replacement is not held up by a backed-off wait.
   */
  pollSoon(): void {
    if (this.stopping || this.options.dryRun === true) return;
    this.polls.soon();
  }

  /** The wait before the next timed poll: the base after a change, doubling while nothing changes. */
  get pollWaitMs(): number {
    return this.polls.currentWaitMs;
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
      if (!this.table.submissions.has(id))
        this.table.addSubmission({ id, number: 0, kind: 'initial', count: 0, scriptPath: '', cancelled: false });
    }
    this.adopting = true;
    try {
      await this.pollNow();
    } finally {
      this.adopting = false;
    }
    let live = 0;
    for (const id of ids) {
      const tasks = this.table.tasksOf(id);
      const open = tasks.filter((t) => t.state !== 'ended').length;
      if (open === 0) {
        // Nothing of it left to poll, replace or cancel (and PBS's qstat fails on an id that has aged out).
        this.table.dropSubmission(id);
        continue;
      }
      // What the scheduler still lists is all there is of it now (ended tasks may have been purged).
      this.table.submissions.get(id)!.count = tasks.length;
      live += open;
    }
    this.events.emit({
      kind: 'adopted',
      text: `took over ${live} queued or running agent(s) from an earlier coordinator (submissions ${ids.join(', ')})`,
    });
    return live;
  }

  /** Submit `count` agents as one array; returns the submission id ('' on a dry run). Throws with qsub/sbatch's stderr. */
  async submit(kind: SubmissionKind, count: number): Promise<string> {
    const request = this.request;
    if (request === undefined) throw new SchedulerCommandError('submit', null, '', 'start() was not called');
    const plan = writeSubmissionScript({
      profile: this.profile,
      request,
      runId: this.runId,
      jobName: this.jobName,
      launchDir: this.launchDir,
      number: ++this.submissionCount,
      kind,
      count,
      projectDir: this.options.projectDir,
      nodeBinary: this.options.nodeBinary,
    });
    const { command: cmd, scriptPath, number } = plan;
    if (this.options.dryRun === true) {
      this.dryRunScript = plan.script;
      this.events.emit({
        kind: 'dry_run',
        text: `dry run: wrote ${scriptPath}; would run ${cmd.command} ${cmd.args.join(' ')}`,
      });
      return '';
    }
    const id = await submitScript(this.run, this.dialect, plan, (text) =>
      this.events.emit({ kind: 'submit_failed', text }),
    );
    this.table.addSubmission({ id, number, kind, count, scriptPath, cancelled: false });
    this.polls.reset();
    this.events.emit({
      kind: 'submitted',
      submissionId: id,
      text: `${kind} submission ${number}: ${count} agent(s) as ${id} (${scriptPath})`,
    });
    return id;
  }

  /** One batched poll; safe to call any time (concurrent calls share one). Never throws. */
  pollNow(): Promise<void> {
    if (this.polling !== undefined) return this.polling;
    this.polls.started();
    this.polling = this.pollOnce()
      .catch((error: unknown) => {
        this.events.emit({ kind: 'poll_failed', text: `poll failed: ${(error as Error).message}` });
        return false;
      })
      .then((changed) => {
        this.polling = undefined;
        this.polls.ended(changed, this.stopping ? undefined : this.nextContinuationAt());
      });
    return this.polling;
  }

  /** Polls once; true when what the scheduler said changed any task (appeared, moved on, vanished). */
  private async pollOnce(): Promise<boolean> {
    if (this.table.submissions.size === 0) return false;
    const before = JSON.stringify(this.table.snapshot());
    let cmd = this.fallbackPoll ?? this.dialect.pollCommand(this.jobName, this.submissionIds());
    let result = await this.run(cmd.command, cmd.args, { timeoutMs: 30_000 });
    const fallback = this.fallbackPoll === undefined ? this.dialect.pollFallback?.(result) : undefined;
    if (fallback !== undefined) {
      this.fallbackPoll = fallback;
      this.events.emit({
        kind: 'poll_failed',
        text: `${cmd.command} ${cmd.args.slice(0, 5).join(' ')} is refused here (${result.stderr.trim().split('\n')[0] ?? ''}); polling with ${fallback.command} ${fallback.args.join(' ')} from now on`,
      });
      cmd = fallback;
      result = await this.run(cmd.command, cmd.args, { timeoutMs: 30_000 });
    }
    const statuses = this.dialect.parsePoll(result, this.jobName);
    if (this.dialect.pollFailed(result, statuses)) {
      // A scheduler that did not answer says nothing about our jobs: keep the last known state.
      this.events.emit({
        kind: 'poll_failed',
        text: `${cmd.command} exited ${result.code}: ${result.stderr.trim().slice(0, 500)}`,
      });
      return false;
    }
    const now = this.clock.now();
    const seen = new Set<string>();
    for (const status of statuses) {
      if (status.submissionId !== undefined && !this.table.submissions.has(status.submissionId)) continue;
      seen.add(status.id);
      this.apply(status, now);
    }
    for (const gone of this.table.goneStatuses(seen)) this.apply(gone, now);
    if (!this.stopping) {
      this.continueBeforeWalltime(now);
      await this.trimQueued();
    }
    this.writeSnapshot();
    return JSON.stringify(this.table.snapshot()) !== before;
  }

  /** launch/tasks.json after every poll (`at`: this poll), for `pe-arena status <runDir>`. */
  private writeSnapshot(): void {
    if (this.launchDir === '') return;
    try {
      writeTasksFile(this.launchDir, this.jobName, this.clock.now(), this.tasksSnapshot());
    } catch (error) {
      this.log(`cannot write ${join(this.launchDir, 'tasks.json')}: ${(error as Error).message}`);
    }
  }

  /** Applies one polled status and acts on what changed: events, exit reports, replacements. */
  private apply(status: TaskStatus, now: number): void {
    for (const change of this.table.apply(status, now, this.adopting)) this.onChange(change);
  }

  private onChange({ kind, task, status }: TaskChange): void {
    if (kind === 'queued') {
      this.events.emit({
        kind: 'queued',
        launcherId: status.id,
        ...(status.submissionId === undefined ? {} : { submissionId: status.submissionId }),
        state: status.rawState,
        text: `${status.id} queued (${status.rawState})`,
      });
    } else if (kind === 'running') {
      this.events.emit({
        kind: 'running',
        launcherId: task.id,
        state: status.rawState,
        ...(task.host === undefined ? {} : { host: task.host }),
        text: `${task.id} running${task.host === undefined ? '' : ` on ${task.host}`}`,
      });
    } else {
      this.ended(task, status);
    }
  }

  private ended(task: Task, status: TaskStatus): void {
    const code = status.exitCode ?? null;
    const signal = status.signal ?? null;
    this.events.emit({
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
      this.events.emit({
        kind: 'replacement',
        launcherId: task.id,
        text: `not replacing ${task.id}: the cap of ${this.profile.maxReplacements} replacements is used up`,
      });
      return;
    }
    if (this.table.activeNotContinued() >= this.demand()) return;
    this.replacementsUsed++;
    this.background(this.submit('replacement', 1)).then(
      (id) =>
        this.events.emit({
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

  /** The soonest time a continuation falls due: a backed-off poll must not come later. */
  private nextContinuationAt(): number | undefined {
    return this.table.nextContinuationAt(this.profile.walltimeS * 1000, this.profile.continuationLeadS * 1000);
  }

  /** Submit a continuation for each running agent whose walltime ends within the lead time. */
  private continueBeforeWalltime(now: number): void {
    const leadMs = this.profile.continuationLeadS * 1000;
    for (const task of this.table.tasks.values()) {
      const endsAt = this.table.walltimeEnd(task, this.profile.walltimeS * 1000);
      if (endsAt === undefined || now < endsAt - leadMs) continue;
      task.continued = true;
      if (this.table.activeNotContinued() >= this.demand()) continue;
      this.background(this.submit('continuation', 1)).then(
        (id) =>
          this.events.emit({
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
    let excess = this.table.activeNotContinued() - this.demand();
    if (excess <= 0) return;
    const ids: string[] = [];
    for (const s of this.table.queuedExtras()) {
      if (excess <= 0) break;
      s.cancelled = true;
      excess -= s.count;
      ids.push(s.id);
    }
    if (ids.length === 0) return;
    await this.cancel(ids, false);
    this.events.emit({ kind: 'cancelled', text: `cancelled queued ${ids.join(', ')}: the run no longer needs them` });
  }

  private async cancel(ids: string[], force: boolean): Promise<void> {
    if (ids.length === 0) return;
    this.polls.reset();
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
    this.polls.stop();
    await this.polling;
    // A replacement submitted just now must be in the list to cancel.
    await Promise.allSettled([...this.inFlight]);
    const ids = this.submissionIds();
    if (ids.length > 0) {
      for (const s of this.table.submissions.values()) s.cancelled = true;
      await this.cancel(ids, false);
      this.events.emit({ kind: 'cancelled', text: `stop: cancelled ${ids.join(', ')}` });
      await this.waitUntilGone(ids, graceMs);
    }
    if (this.exitHookInstalled) {
      process.off('exit', this.exitHook);
      this.exitHookInstalled = false;
    }
  }

  /**
   * Polls until the scheduler holds nothing of the run; cancels by force once graceMs has passed, and gives up
   * STOP_BOUND_AFTER_GRACE_MS later (a scheduler that never answers must not hang shutdown).
   */
  private async waitUntilGone(ids: string[], graceMs: number): Promise<void> {
    const started = this.clock.now();
    let forced = false;
    while (this.clock.now() - started < graceMs + STOP_BOUND_AFTER_GRACE_MS) {
      await this.pollNow();
      if (this.alive() === 0) return;
      if (!forced && this.clock.now() - started >= graceMs) {
        forced = true;
        await this.cancel(ids, true);
      }
      await this.clock.sleep(STOP_POLL_MS);
    }
  }

  private cancelAllSync(): void {
    const ids = [...this.table.submissions.values()].filter((s) => !s.cancelled).map((s) => s.id);
    if (ids.length === 0) return;
    const cmd = this.dialect.cancelCommand(ids, false);
    spawnSync(schedulerCommandPath(this.profile.commandsDir, cmd.command), cmd.args, {
      timeout: 5_000,
      stdio: 'ignore',
    });
  }
}
