// The coordinator: the head-node actor. It takes its transport, clock, run directory and launcher injected,
// journals every state change before acting on it, places jobs, watches agents, moves lost jobs (resuming from
// their last acknowledged checkpoint) and writes results. Bad input is logged with the peer and never stops it.
// This file orchestrates: membership, the job handlers, the outbox, the snapshot and the restore are its parts.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PeArenaError, toWireError } from '../protocol/errors.ts';
import type { AgentId, AgentToCoordinator, JobId, StatusReply, WireError } from '../protocol/messages.ts';
import type { Inbound, PeerId, ServerTransport } from '../protocol/transport.ts';
import { raceDeadline } from '../protocol/deadline.ts';
import { systemClock } from '../protocol/clock.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { CheckpointStore } from './checkpoint-store.ts';
import { freeAgent, silentLog } from './context.ts';
import type {
  AgentRecord,
  CoordinatorContext,
  CoordinatorEvent,
  CoordinatorEventKind,
  Lifecycle,
  Log,
} from './context.ts';
import { displayJobId } from './experiment.ts';
import type { Experiment } from './experiment.ts';
import { JobMessages } from './job-messages.ts';
import { Journal } from './journal.ts';
import type { JournalEntry, ReplayedRun } from './journal.ts';
import { restoreFromJournal } from './journal-restore.ts';
import { JournaledOutbox } from './journaled-outbox.ts';
import type { AgentExit, Launcher } from './launchers/types.ts';
import type { LauncherNote } from './launchers/launcher-events.ts';
import { Membership } from './membership.ts';
import { GangCoordinator } from './gangs.ts';
import { JobPlacement } from './placement.ts';
import { MetricsSink } from './metrics-sink.ts';
import type { ComparisonSummary } from '../src/report/comparison.ts';
import { Scheduler } from './scheduler.ts';
import type { ReusedJob } from './reuse.ts';
import { statusSnapshot } from './status-snapshot.ts';

export interface CoordinatorOptions {
  experiment: Experiment;
  runDir: string;
  transport: ServerTransport;
  clock?: Clock;
  log?: Log;
  launcher?: Launcher;
  /** The journal of an interrupted run: done jobs stay done, running ones resume from their checkpoints. */
  resume?: ReplayedRun;
  /** A new run's jobs that an earlier run finished with the same spec (their results are copied already). */
  reused?: readonly ReusedJob[];
  /** Live events for the progress view (joined, lost, reassigned, finished, ...). */
  onEvent?: (event: CoordinatorEvent) => void;
  /** How long to wait for agents' bye after shutdown (default 10 s). */
  drainMs?: number;
  /** Fault injection for end-to-end tests: flip a byte in the first N checkpoint uploads, as if damaged in transit. */
  corruptUploads?: number;
}

export interface RunOutcome {
  done: number;
  failed: number;
  stopped: boolean;
  report?: ComparisonSummary;
}

export class Coordinator {
  readonly experiment: Experiment;
  readonly runDir: string;
  readonly scheduler: Scheduler;
  readonly events: CoordinatorEvent[] = [];
  /** Resolves once every job is done or failed and the agents were told to stop, or after stop(). */
  readonly done: Promise<RunOutcome>;
  private readonly transport: ServerTransport;
  private readonly clock: Clock;
  private readonly log: Log;
  private launcher: Launcher | undefined;
  private readonly outbox: JournaledOutbox;
  private readonly sink: MetricsSink;
  private readonly membership: Membership;
  private readonly jobMessages: JobMessages;
  private readonly placement: JobPlacement;
  private readonly gangs: GangCoordinator;
  private readonly onEvent: ((event: CoordinatorEvent) => void) | undefined;
  private readonly drainMs: number;
  private lifecycle: Lifecycle = 'created';
  private ticker: TimerHandle | undefined;
  private loop: Promise<void> | undefined;
  private closing: Promise<RunOutcome> | undefined;
  private resolveDone!: (outcome: RunOutcome) => void;

  constructor(options: CoordinatorOptions) {
    this.experiment = options.experiment;
    this.runDir = options.runDir;
    this.transport = options.transport;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLog;
    this.launcher = options.launcher;
    this.onEvent = options.onEvent;
    this.drainMs = options.drainMs ?? 10_000;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    mkdirSync(join(this.runDir, 'logs', 'agents'), { recursive: true });
    mkdirSync(join(this.runDir, 'jobs'), { recursive: true });
    const cluster = this.experiment.cluster;
    this.scheduler = new Scheduler(this.experiment.jobs, cluster.maxAttempts, this.clock.now());
    const store = new CheckpointStore(this.runDir, cluster.keepCheckpoints);
    this.sink = new MetricsSink(this.runDir, this.clock);
    const journal = new Journal(join(this.runDir, 'journal.jsonl'), () => this.clock.now());
    this.outbox = new JournaledOutbox(journal, this.transport, this.log);
    const context: CoordinatorContext = {
      experiment: this.experiment,
      runId: this.runId,
      clock: this.clock,
      log: this.log,
      scheduler: this.scheduler,
      store,
      outbox: this.outbox,
      lifecycle: () => this.lifecycle,
      emit: (kind, text, ids) => this.emit(kind, text, ids),
      schedule: () => this.schedule(),
      requeue: (jobId, reason, countAttempt, error) => this.requeue(jobId, reason, countAttempt, error),
      failJob: (jobId, error, text) => this.failJob(jobId, error, text),
      checkFinished: () => this.checkFinished(),
      gangMemberGone: (agentId, jobId, reason) => this.gangs.memberGone(agentId, jobId, reason),
      agentGone: () => this.launcher?.pollSoon?.(),
    };
    this.membership = new Membership(context);
    this.gangs = new GangCoordinator(context, this.membership.agents);
    this.placement = new JobPlacement(context, this.membership.agents, this.gangs);
    this.jobMessages = new JobMessages(context, this.sink, this.transport, options.corruptUploads ?? 0);
    if (options.resume) this.restore(options.resume);
    else {
      this.outbox.record({
        type: 'run_started',
        runId: this.runId,
        experiment: this.experiment.name,
        jobs: this.experiment.jobs.map((j) => j.jobId),
        address: this.transport.address,
      });
      for (const { jobId, fromRun } of options.reused ?? []) {
        const job = this.scheduler.get(jobId);
        if (job === undefined) continue;
        this.scheduler.restore(jobId, { state: 'done', step: job.spec.training.steps });
        this.outbox.record({ type: 'job_reused', jobId, fromRun });
      }
    }
    this.outbox.record({ type: 'coordinator_started', address: this.transport.address, pid: process.pid });
  }

  get runId(): StatusReply['runId'] {
    return this.experiment.jobs[0]?.runId ?? ('' as StatusReply['runId']);
  }

  get state(): Lifecycle {
    return this.lifecycle;
  }

  /** The agents in the run now, by id. */
  get agents(): ReadonlyMap<AgentId, AgentRecord> {
    return this.membership.agents;
  }

  /** Start serving: the inbound loop, the failure detector's tick, the launcher's exit reports. */
  start(): void {
    if (this.lifecycle !== 'created') return;
    this.lifecycle = 'running';
    this.launcher?.onExit((exit) => this.onLauncherExit(exit));
    const tickMs = Math.max(20, Math.min(250, Math.floor(this.experiment.cluster.heartbeatIntervalMs / 2)));
    this.ticker = this.clock.setInterval(() => this.tick(), tickMs);
    this.loop = this.serve();
    // A resumed run may have nothing left to do.
    this.checkFinished();
  }

  /** Drain: tell agents to stop, wait (bounded) for their bye, journal, close. Idempotent. */
  async stop(reason: string): Promise<RunOutcome> {
    if (this.closing) return this.closing;
    if (this.lifecycle !== 'draining') await this.drain(reason, true);
    else await this.done;
    return this.close(reason, true);
  }

  /**
   * Use a launcher built after the coordinator (one that needs it, e.g. to ask how many agents the run still
   * wants). Its exit reports count as failure signals from now on.
   */
  attachLauncher(launcher: Launcher): void {
    this.launcher = launcher;
    if (this.lifecycle !== 'created') launcher.onExit((exit) => this.onLauncherExit(exit));
  }

  /**
   * A batch launcher's news (submitted, queued, running, ended with its exit code, replacement, ...): journaled
   * and shown in the view's event log.
   */
  noteLauncherEvent(event: LauncherNote): void {
    // After the run closed the journal is shut; the launcher's own log (and launch/events.jsonl) still has it.
    if (this.lifecycle === 'stopped') return;
    const entry: JournalEntry = { type: 'launcher_event', kind: event.kind, text: event.text };
    if (event.launcherId !== undefined) entry.launcherId = event.launcherId;
    if (event.submissionId !== undefined) entry.submissionId = event.submissionId;
    if (event.state !== undefined) entry.state = event.state;
    if (event.exitCode !== undefined) entry.exitCode = event.exitCode;
    if (event.host !== undefined) entry.host = event.host;
    try {
      this.outbox.record(entry);
    } catch (error) {
      this.log.warn({ err: error }, `could not journal launcher event: ${event.text}`);
    }
    const agent = event.launcherId === undefined ? undefined : this.membership.withLauncherId(event.launcherId);
    this.emit('launcher', `${event.text}`, agent === undefined ? {} : { agentId: agent.agentId });
  }

  snapshot(): StatusReply {
    return statusSnapshot({
      runId: this.runId,
      experiment: this.experiment.name,
      jobs: this.scheduler.jobs.values(),
      agents: this.membership.agents.values(),
      schedulerTasks: this.launcher?.schedulerTasks?.() ?? [],
      now: this.clock.now(),
    });
  }

  // ------------------------------------------------------------------------------------------
  // Inbound

  private async serve(): Promise<void> {
    try {
      for await (const inbound of this.transport.inbound()) {
        if (this.lifecycle === 'stopped') break;
        this.handle(inbound);
      }
    } catch (error) {
      this.log.error({ err: error }, 'inbound loop ended with an error');
    }
  }

  /** One inbound item; never throws (bad input is logged with the peer and the coordinator carries on). */
  handle(inbound: Inbound<AgentToCoordinator>): void {
    if (inbound.kind === 'malformed') {
      this.log.warn(
        { peer: inbound.from, field: inbound.error.field, err: inbound.error.message },
        `malformed message from peer ${inbound.from}: ${inbound.error.message}`,
      );
      return;
    }
    const { from, message } = inbound;
    try {
      this.dispatch(from, message);
    } catch (error) {
      this.log.error(
        { peer: from, type: message.type, err: error },
        `could not handle ${message.type} from peer ${from}: ${(error as Error).message}`,
      );
      // Sending the same message again would fail here the same way, unless the error itself says otherwise.
      const retryable = error instanceof PeArenaError && error.retryable;
      this.outbox.send(from, { type: 'error', error: { ...toWireError(error), retryable }, context: message.type });
    }
  }

  private dispatch(from: PeerId, message: AgentToCoordinator): void {
    switch (message.type) {
      case 'status_request':
        this.outbox.send(from, this.snapshot());
        return;
      case 'hello':
        this.membership.onHello(from, message);
        return;
      case 'error':
        this.log.warn(
          { peer: from, context: message.context, err: message.error },
          `agent error: ${message.error.message}`,
        );
        return;
      default:
        break;
    }
    const agent = this.membership.identify(from, message);
    if (agent === undefined) return;
    this.membership.heardFrom(agent);
    const jobs = this.jobMessages;
    const fenced = (m: { type: string; jobId: JobId; epoch: number }): boolean => this.membership.fenced(agent, m);
    switch (message.type) {
      case 'heartbeat':
        this.membership.onHeartbeat(agent, message);
        return;
      case 'bye':
        this.membership.onBye(agent, message.reason);
        return;
      case 'metrics':
        if (fenced(message)) jobs.onMetrics(message);
        return;
      case 'checkpoint_chunk':
        if (fenced(message)) jobs.onChunk(agent, message);
        return;
      case 'checkpoint_request':
        if (fenced(message)) void jobs.onCheckpointRequest(agent, message);
        return;
      case 'job_result':
        if (!fenced(message)) return;
        jobs.onResult(agent, message);
        this.gangs.release(message.jobId, 'the job finished');
        return;
      case 'job_failed':
        if (!fenced(message)) return;
        // A gang rank other than 0 failed on its own (its worker crashed): the gang goes on without it.
        if (this.scheduler.get(message.jobId)?.agentId !== agent.agentId && message.error.retryable) {
          freeAgent(agent);
          this.gangs.memberGone(agent.agentId, message.jobId, `failed: ${message.error.message}`);
          return;
        }
        jobs.onFailed(agent, message);
        return;
      case 'gang_address':
        if (fenced(message)) this.gangs.onAddress(agent, message);
        return;
      case 'gang_ready':
        if (fenced(message)) this.gangs.onReady(agent, message);
        return;
      case 'gang_done':
        if (fenced(message)) this.gangs.onDone(agent, message);
        return;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Failure signals

  private tick(): void {
    if (this.lifecycle !== 'running' && this.lifecycle !== 'draining') return;
    try {
      this.membership.tick();
      this.gangs.tick();
      this.schedule();
    } catch (error) {
      this.log.error({ err: error }, 'failure detector tick failed');
    }
  }

  private onLauncherExit(exit: AgentExit): void {
    try {
      this.membership.onLauncherExit(exit);
    } catch (error) {
      this.log.error({ err: error }, 'handling a launcher exit failed');
    }
  }

  private requeue(jobId: JobId, reason: string, countAttempt: boolean, error?: WireError): void {
    const job = this.scheduler.get(jobId);
    if (!job) return;
    this.gangs.release(jobId, `requeued: ${reason}`);
    this.outbox.record({
      type: 'job_requeued',
      jobId,
      reason,
      epoch: job.epoch,
      step: job.step,
      // A drained job resumed by a later coordinator must not have used up an attempt either.
      ...(countAttempt ? {} : { attemptCounted: false as const }),
    });
    const r = this.scheduler.requeue(jobId, countAttempt);
    if (r.outcome === 'failed') {
      const err: WireError = error ?? {
        name: 'AttemptsExhaustedError',
        message: `gave up after ${r.job.attempt} attempts; last: ${reason}`,
        retryable: false,
      };
      this.failJob(
        jobId,
        { ...err, retryable: false },
        `${displayJobId(jobId)} failed: ${r.job.attempt} attempts used (${reason})`,
      );
    }
  }

  private schedule(): void {
    if (this.lifecycle === 'running') this.placement.schedule();
  }

  private failJob(jobId: JobId, error: WireError, text: string): void {
    this.gangs.release(jobId, `failed: ${error.message}`);
    this.outbox.record({ type: 'job_failed', jobId, epoch: this.scheduler.get(jobId)?.epoch ?? 0, error });
    this.scheduler.fail(jobId, error, this.clock.now());
    this.log.error({ jobId, err: error }, text);
    this.emit('failed', text, { jobId });
  }

  // ------------------------------------------------------------------------------------------
  // The end of a run

  private checkFinished(): void {
    if (this.lifecycle !== 'running' || !this.scheduler.allFinished()) return;
    void this.finishRun();
  }

  private async finishRun(): Promise<void> {
    const c = this.scheduler.counts();
    this.outbox.record({ type: 'run_finished', done: c.done, failed: c.failed });
    let report: ComparisonSummary | undefined;
    try {
      report = this.sink.writeComparison(this.experiment);
    } catch (error) {
      this.log.error({ err: error }, 'writing the comparison failed');
    }
    this.emit('run_finished', `run finished: ${c.done} done, ${c.failed} failed`);
    await this.drain('run finished', false);
    await this.close('run finished', false, report);
  }

  /**
   * Stop handing out work and let agents leave. With `checkpoint`, the launcher's own agents get SIGTERM, on
   * which they checkpoint their job (still accepted here) before saying bye; other agents get `shutdown`.
   */
  private async drain(reason: string, checkpoint: boolean): Promise<void> {
    if (this.lifecycle === 'stopped' || this.lifecycle === 'draining') return;
    this.lifecycle = 'draining';
    const agents = this.membership.agents;
    this.log.info({ reason, agents: agents.size }, `draining: ${reason}`);
    if (checkpoint) this.recordStop(reason);
    const signalled = new Set(checkpoint && this.launcher?.signalAll ? this.launcher.signalAll('SIGTERM') : []);
    for (const agent of agents.values()) {
      if (!signalled.has(agent.pid)) this.outbox.send(agent.peer, { type: 'shutdown', reason });
    }
    // Wait (bounded) for every agent's bye; during this the loop still accepts checkpoints. The short slices also
    // notice agents the failure detector removes.
    const deadline = this.clock.now() + this.drainMs;
    while (agents.size > 0 && this.clock.now() < deadline) {
      const slice = Math.min(200, Math.max(1, deadline - this.clock.now()));
      await raceDeadline(this.membership.nextDeparture(), slice, this.clock);
    }
  }

  /** The stop in the journal, before the drain's checkpoints: which jobs were running, at which step. */
  private recordStop(reason: string): void {
    const running: { jobId: JobId; agentId: AgentId; step: number }[] = [];
    for (const job of this.scheduler.jobs.values()) {
      if (job.agentId !== undefined && (job.state === 'assigned' || job.state === 'running'))
        running.push({ jobId: job.spec.jobId, agentId: job.agentId, step: job.step });
    }
    try {
      this.outbox.record({ type: 'run_stopped', reason, running });
    } catch (error) {
      this.log.error({ err: error }, 'could not journal the stop');
    }
  }

  /** Idempotent: a second caller waits for the first close to finish (files flushed, transport closed). */
  private close(reason: string, stopped: boolean, report?: ComparisonSummary): Promise<RunOutcome> {
    this.closing ??= this.closeOnce(reason, stopped, report);
    return this.closing;
  }

  private async closeOnce(
    reason: string,
    stopped: boolean,
    report: ComparisonSummary | undefined,
  ): Promise<RunOutcome> {
    this.lifecycle = 'stopped';
    this.clock.clearInterval(this.ticker);
    this.gangs.close();
    const c = this.scheduler.counts();
    const outcome: RunOutcome = { done: c.done, failed: c.failed, stopped };
    if (report) outcome.report = report;
    try {
      this.outbox.record({ type: 'coordinator_stopped', reason });
    } catch (error) {
      this.log.error({ err: error }, 'journal close failed');
    }
    this.outbox.close();
    await this.sink.close();
    await this.transport.close().catch(() => undefined);
    await this.loop;
    this.resolveDone(outcome);
    return outcome;
  }

  private restore(run: ReplayedRun): void {
    restoreFromJournal(run, {
      runDir: this.runDir,
      scheduler: this.scheduler,
      keepCheckpoints: this.experiment.cluster.keepCheckpoints,
      now: this.clock.now(),
      record: (entry) => this.outbox.record(entry),
    });
    this.log.info({ runId: run.runId, ...this.scheduler.counts() }, `resumed run ${run.runId} from its journal`);
  }

  private emit(kind: CoordinatorEventKind, text: string, ids: { jobId?: JobId; agentId?: AgentId } = {}): void {
    const event: CoordinatorEvent = { time: this.clock.now(), kind, text, ...ids };
    this.events.push(event);
    if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
    try {
      this.onEvent?.(event);
    } catch {
      // The view must never break the coordinator.
    }
  }
}
