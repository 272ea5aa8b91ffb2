// The coordinator: the head-node actor. It takes its transport, clock, run directory and launcher injected,
// journals every state change before acting on it, places jobs, watches agents, moves lost jobs (resuming from
// their last acknowledged checkpoint) and writes results. Bad input is logged with the peer and never stops it.
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { metricPoints } from '../protocol/metric-columns.ts';
import type {
  AgentId,
  AgentStatus,
  AgentToCoordinator,
  CheckpointChunk,
  CheckpointRequest,
  CoordinatorToAgent,
  DeviceInfo,
  Heartbeat,
  Hello,
  JobFailed,
  JobId,
  JobResult,
  JobStatus,
  Metrics,
  StatusReply,
  WireError,
} from '../protocol/messages.ts';
import type { Inbound, PeerId, ServerTransport } from '../protocol/transport.ts';
import { negotiate } from '../protocol/handshake.ts';
import { systemClock } from '../protocol/clock.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { CheckpointStore, chunksOf } from './checkpoint-store.ts';
import { displayJobId } from './experiment.ts';
import type { Experiment } from './experiment.ts';
import { FailureDetector } from './failure-detector.ts';
import { Journal } from './journal.ts';
import type { JournalEntry, ReplayedRun } from './journal.ts';
import type { AgentExit, Launcher } from './launchers/types.ts';
import type { LauncherNote } from './launchers/launcher-events.ts';
import { MetricsSink } from './metrics-sink.ts';
import type { ComparisonReport } from './metrics-sink.ts';
import { Scheduler } from './scheduler.ts';
import type { JobState, PlaceableAgent } from './scheduler.ts';

/** The slice of pino the coordinator uses, so tests can pass a silent or capturing logger. */
export interface Log {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

export type CoordinatorEventKind =
  | 'joined'
  | 'suspect'
  | 'recovered'
  | 'lost'
  | 'left'
  | 'assigned'
  | 'reassigned'
  | 'finished'
  | 'failed'
  | 'rejected'
  | 'stale'
  | 'checkpoint_refused'
  | 'unplaceable'
  | 'run_finished'
  | 'launcher';

export interface CoordinatorEvent {
  time: number;
  kind: CoordinatorEventKind;
  text: string;
  jobId?: JobId;
  agentId?: AgentId;
}

export interface AgentRecord {
  agentId: AgentId;
  peer: PeerId;
  host: string;
  pid: number;
  backend: string;
  devices: DeviceInfo[];
  launcherId?: string;
  state: 'idle' | 'busy' | 'suspect' | 'draining';
  suspect: boolean;
  lastHeardAt: number;
  joinedAt: number;
  jobId?: JobId;
  /** When the current job was sent, so an early "idle" heartbeat (sent before the assign arrived) is forgiven. */
  assignedAt?: number;
}

export interface CoordinatorOptions {
  experiment: Experiment;
  runDir: string;
  transport: ServerTransport;
  clock?: Clock;
  log?: Log;
  launcher?: Launcher;
  /** The journal of an interrupted run: done jobs stay done, running ones resume from their checkpoints. */
  resume?: ReplayedRun;
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
  report?: ComparisonReport;
}

type Lifecycle = 'created' | 'running' | 'draining' | 'stopped';

export class Coordinator {
  readonly experiment: Experiment;
  readonly runDir: string;
  readonly scheduler: Scheduler;
  readonly agents = new Map<AgentId, AgentRecord>();
  readonly events: CoordinatorEvent[] = [];
  private readonly byPeer = new Map<PeerId, AgentId>();
  private readonly transport: ServerTransport;
  private readonly clock: Clock;
  private readonly log: Log;
  private launcher: Launcher | undefined;
  private readonly journal: Journal;
  private readonly store: CheckpointStore;
  private readonly sink: MetricsSink;
  private readonly detector: FailureDetector;
  private readonly onEvent: ((event: CoordinatorEvent) => void) | undefined;
  private readonly drainMs: number;
  private lifecycle: Lifecycle = 'created';
  private corruptUploads: number;
  private ticker: TimerHandle | undefined;
  private loop: Promise<void> | undefined;
  private outcome: RunOutcome | undefined;
  private resolveDone!: (outcome: RunOutcome) => void;
  /** Resolves once every job is done or failed and the agents were told to stop, or after stop(). */
  readonly done: Promise<RunOutcome>;
  private byeWaiters: (() => void)[] = [];

  constructor(options: CoordinatorOptions) {
    this.experiment = options.experiment;
    this.runDir = options.runDir;
    this.transport = options.transport;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLog;
    this.launcher = options.launcher;
    this.onEvent = options.onEvent;
    this.drainMs = options.drainMs ?? 10_000;
    this.corruptUploads = options.corruptUploads ?? 0;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    mkdirSync(join(this.runDir, 'logs', 'agents'), { recursive: true });
    mkdirSync(join(this.runDir, 'jobs'), { recursive: true });
    const cluster = this.experiment.cluster;
    this.scheduler = new Scheduler(this.experiment.jobs, cluster.maxAttempts, this.clock.now());
    this.store = new CheckpointStore(this.runDir, cluster.keepCheckpoints);
    this.sink = new MetricsSink(this.runDir);
    this.detector = new FailureDetector(cluster);
    this.journal = new Journal(join(this.runDir, 'journal.jsonl'), () => this.clock.now());
    if (options.resume) this.restore(options.resume);
    else {
      this.record({
        type: 'run_started',
        runId: this.runId,
        experiment: this.experiment.name,
        jobs: this.experiment.jobs.map((j) => j.jobId),
        address: this.transport.address,
      });
    }
    this.record({ type: 'coordinator_started', address: this.transport.address, pid: process.pid });
  }

  get runId(): StatusReply['runId'] {
    return this.experiment.jobs[0]?.runId ?? ('' as StatusReply['runId']);
  }

  get state(): Lifecycle {
    return this.lifecycle;
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
      this.record(entry);
    } catch (error) {
      this.log.warn({ err: error }, `could not journal launcher event: ${event.text}`);
    }
    const agent =
      event.launcherId === undefined
        ? undefined
        : [...this.agents.values()].find((a) => a.launcherId === event.launcherId);
    this.emit('launcher', `${event.text}`, agent === undefined ? {} : { agentId: agent.agentId });
  }

  snapshot(): StatusReply {
    const now = this.clock.now();
    const jobs: JobStatus[] = [...this.scheduler.jobs.values()].map((j) => {
      const s: JobStatus = {
        jobId: j.spec.jobId,
        encoding: j.spec.encoding,
        task: j.spec.task.name,
        seed: j.spec.seed,
        state: j.state,
        attempt: j.attempt,
        epoch: j.epoch,
        step: j.step,
        totalSteps: j.spec.training.steps,
      };
      if (j.agentId !== undefined) s.agentId = j.agentId;
      if (j.loss !== undefined) s.loss = j.loss;
      if (j.accuracy !== undefined) s.accuracy = j.accuracy;
      if (j.tokensPerSecond !== undefined) s.tokensPerSecond = j.tokensPerSecond;
      return s;
    });
    const agents: AgentStatus[] = [...this.agents.values()].map((a) => {
      const s: AgentStatus = {
        agentId: a.agentId,
        host: a.host,
        pid: a.pid,
        backend: a.backend,
        state: a.suspect ? 'suspect' : a.state,
        lastHeartbeatAgoMs: now - a.lastHeardAt,
      };
      if (a.jobId !== undefined) s.jobId = a.jobId;
      if (a.launcherId !== undefined) s.launcherId = a.launcherId;
      return s;
    });
    const schedulerTasks = this.launcher?.schedulerTasks?.() ?? [];
    return {
      type: 'status',
      runId: this.runId,
      experiment: this.experiment.name,
      jobs,
      agents,
      ...(schedulerTasks.length > 0 ? { schedulerTasks } : {}),
    };
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
      this.send(from, { type: 'error', error: wire(error), context: message.type });
    }
  }

  private dispatch(from: PeerId, message: AgentToCoordinator): void {
    switch (message.type) {
      case 'status_request':
        this.send(from, this.snapshot());
        return;
      case 'hello':
        this.onHello(from, message);
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
    const agentId = this.byPeer.get(from);
    const claimed = message.type === 'heartbeat' || message.type === 'bye' ? message.agentId : undefined;
    const agent = agentId === undefined ? this.reclaim(from, message, claimed) : this.agents.get(agentId);
    if (agent === undefined || (claimed !== undefined && claimed !== agent.agentId)) {
      const who = claimed ?? agentId ?? 'unknown';
      this.log.warn(
        { peer: from, agentId: who, type: message.type },
        `rejected ${message.type} from unknown agent ${who} (peer ${from})`,
      );
      this.send(from, {
        type: 'reject',
        reason: `unknown agent ${who}: say hello again with a fresh agentId`,
        version: PROTOCOL_VERSION,
      });
      return;
    }
    this.heardFrom(agent);
    switch (message.type) {
      case 'heartbeat':
        this.onHeartbeat(agent, message);
        return;
      case 'bye':
        this.onBye(agent, message.reason);
        return;
      case 'metrics':
        if (this.fenced(agent, message)) this.onMetrics(message);
        return;
      case 'checkpoint_chunk':
        if (this.fenced(agent, message)) this.onChunk(agent, message);
        return;
      case 'checkpoint_request':
        if (this.fenced(agent, message)) void this.onCheckpointRequest(agent, message);
        return;
      case 'job_result':
        if (this.fenced(agent, message)) this.onResult(agent, message);
        return;
      case 'job_failed':
        if (this.fenced(agent, message)) this.onFailed(agent, message);
        return;
    }
  }

  /**
   * A known agent whose connection came back under a new routing id (ZeroMQ gives a reconnecting DEALER a new
   * one): recognised by the agentId it names, or by carrying the current epoch of the job it holds.
   */
  private reclaim(from: PeerId, message: AgentToCoordinator, claimed: AgentId | undefined): AgentRecord | undefined {
    let agent: AgentRecord | undefined;
    if (claimed !== undefined) agent = this.agents.get(claimed);
    else if ('jobId' in message && 'epoch' in message) {
      const job = this.scheduler.get(message.jobId);
      if (job && job.epoch === message.epoch && job.agentId !== undefined) agent = this.agents.get(job.agentId);
    }
    if (agent === undefined) return undefined;
    this.log.info(
      { agentId: agent.agentId, oldPeer: agent.peer, peer: from },
      `agent ${agent.agentId} reconnected as peer ${from}`,
    );
    if (this.byPeer.get(agent.peer) === agent.agentId) this.byPeer.delete(agent.peer);
    agent.peer = from;
    this.byPeer.set(from, agent.agentId);
    return agent;
  }

  private onHello(from: PeerId, hello: Hello): void {
    const verdict = negotiate(hello);
    if (!verdict.ok) {
      this.log.warn(
        { peer: from, agentId: hello.agentId, ours: PROTOCOL_VERSION, theirs: hello.version },
        verdict.logLine,
      );
      this.send(from, verdict.reject);
      this.emit(
        'rejected',
        `rejected ${hello.agentId}@${hello.host}: protocol version ${hello.version}, ours is ${PROTOCOL_VERSION}`,
        { agentId: hello.agentId },
      );
      return;
    }
    if (this.lifecycle !== 'running') {
      this.send(from, { type: 'reject', reason: 'the coordinator is shutting down', version: PROTOCOL_VERSION });
      return;
    }
    // A known id saying hello again is a new incarnation: whatever the old one held is lost.
    const old = this.agents.get(hello.agentId);
    if (old) this.agentLost(old, 'said hello again (restarted)');
    const previous = this.byPeer.get(from);
    if (previous !== undefined) {
      const prevAgent = this.agents.get(previous);
      if (prevAgent) this.agentLost(prevAgent, 'rejoined as a fresh agent');
    }
    const now = this.clock.now();
    const agent: AgentRecord = {
      agentId: hello.agentId,
      peer: from,
      host: hello.host,
      pid: hello.pid,
      backend: hello.backend,
      devices: hello.devices,
      state: 'idle',
      suspect: false,
      lastHeardAt: now,
      joinedAt: now,
    };
    if (hello.launcherId !== undefined) agent.launcherId = hello.launcherId;
    const entry: JournalEntry = {
      type: 'agent_joined',
      agentId: agent.agentId,
      host: agent.host,
      pid: agent.pid,
      backend: agent.backend,
    };
    if (hello.launcherId !== undefined) entry.launcherId = hello.launcherId;
    this.record(entry);
    this.agents.set(agent.agentId, agent);
    this.byPeer.set(from, agent.agentId);
    this.log.info(
      { peer: from, agentId: agent.agentId, host: agent.host, pid: agent.pid, backend: agent.backend },
      `agent ${agent.agentId} joined from ${agent.host} (pid ${agent.pid}, ${agent.backend})`,
    );
    this.send(from, {
      type: 'welcome',
      version: PROTOCOL_VERSION,
      agentId: agent.agentId,
      runId: this.runId,
      heartbeatIntervalMs: this.experiment.cluster.heartbeatIntervalMs,
    });
    this.emit('joined', `${agent.agentId}@${agent.host} joined (${agent.backend})`, { agentId: agent.agentId });
    this.schedule();
  }

  private onHeartbeat(agent: AgentRecord, hb: Heartbeat): void {
    this.send(agent.peer, { type: 'heartbeat_ack', seq: hb.seq, time: this.clock.now() });
    if (hb.state === 'draining' && agent.state !== 'draining') agent.state = 'draining';
    // An agent that says it is idle while we think it holds a job lost the assignment (or dropped the job
    // without telling): give the job to someone else rather than wait for the watchdog.
    if (hb.state === 'idle' && agent.jobId !== undefined) {
      const grace = Math.max(3 * this.experiment.cluster.heartbeatIntervalMs, 2000);
      if (this.clock.now() - (agent.assignedAt ?? 0) > grace) {
        const jobId = agent.jobId;
        this.freeAgent(agent);
        const job = this.scheduler.get(jobId);
        if (job && job.agentId === agent.agentId && job.state !== 'done' && job.state !== 'failed') {
          this.store.dropUploads(jobId);
          this.requeue(jobId, `${agent.agentId} reports idle`, false);
          this.log.warn(
            { agentId: agent.agentId, jobId },
            `${agent.agentId} reports idle while holding ${jobId}: re-queued`,
          );
        }
        this.schedule();
      }
    }
    if (hb.state === 'busy' && hb.jobId !== undefined && hb.epoch !== undefined) {
      if (!this.scheduler.isCurrent(hb.jobId, hb.epoch, agent.agentId)) {
        this.stale(agent, hb.jobId, hb.epoch, 'heartbeat');
        return;
      }
      if (hb.step !== undefined) this.scheduler.progress(hb.jobId, hb.step, this.clock.now());
    }
  }

  private onBye(agent: AgentRecord, reason: string): void {
    this.log.info({ agentId: agent.agentId, reason }, `agent ${agent.agentId} said bye: ${reason}`);
    this.removeAgent(agent, 'left', reason, false);
    for (const w of this.byeWaiters.splice(0)) w();
  }

  /** Fencing: a job message counts only if it carries the job's current epoch and comes from its agent. */
  private fenced(agent: AgentRecord, message: { type: string; jobId: JobId; epoch: number }): boolean {
    if (this.scheduler.isCurrent(message.jobId, message.epoch, agent.agentId)) return true;
    this.stale(agent, message.jobId, message.epoch, message.type);
    return false;
  }

  private stale(agent: AgentRecord, jobId: JobId, epoch: number, what: string): void {
    const job = this.scheduler.get(jobId);
    const current =
      job === undefined
        ? 'unknown job'
        : `current epoch ${job.epoch}${job.agentId ? ` on ${job.agentId}` : ''}, ${job.state}`;
    this.log.warn(
      { peer: agent.peer, agentId: agent.agentId, jobId, epoch, type: what },
      `dropped stale ${what} for ${jobId} epoch ${epoch} from ${agent.agentId} (${current})`,
    );
    this.send(agent.peer, { type: 'cancel', jobId, epoch, reason: `stale epoch ${epoch} for ${jobId} (${current})` });
    this.emit('stale', `dropped stale ${what} from ${agent.agentId} for ${displayJobId(jobId)} (epoch ${epoch})`, {
      jobId,
      agentId: agent.agentId,
    });
    // The agent thinks it holds a job we gave elsewhere: it is free once it has cancelled.
    if (agent.jobId === jobId) {
      delete agent.jobId;
      agent.state = 'idle';
    }
  }

  private onMetrics(m: Metrics): void {
    const job = this.scheduler.get(m.jobId);
    const points = metricPoints(m);
    if (!job || points.length === 0) return;
    this.sink.write(m.jobId, m.epoch, points);
    const last = points.reduce((a, b) => (b.step > a.step ? b : a));
    this.scheduler.progress(m.jobId, last.step, this.clock.now());
    if (Number.isFinite(last.loss)) job.loss = last.loss;
    if (Number.isFinite(last.tokensPerSecond)) job.tokensPerSecond = last.tokensPerSecond;
    const acc = [...points].reverse().find((p) => p.accuracy !== undefined)?.accuracy;
    if (acc !== undefined) job.accuracy = acc;
  }

  private onChunk(agent: AgentRecord, chunk: CheckpointChunk): void {
    if (this.corruptUploads > 0 && chunk.index === 0 && chunk.data.byteLength > 0) {
      this.corruptUploads--;
      chunk = { ...chunk, data: chunk.data.map((b, i) => (i === 0 ? b ^ 0xff : b)) };
      this.log.warn(
        { jobId: chunk.jobId, checkpointId: chunk.checkpointId },
        'fault injection: corrupted the first chunk of this upload',
      );
    }
    const outcome = this.store.accept(chunk);
    if (outcome.status === 'partial') return;
    const ack = {
      type: 'checkpoint_ack',
      jobId: chunk.jobId,
      epoch: chunk.epoch,
      checkpointId: chunk.checkpointId,
    } as const;
    if (outcome.status === 'rejected') {
      this.log.warn(
        { agentId: agent.agentId, jobId: chunk.jobId, checkpointId: chunk.checkpointId, reason: outcome.reason },
        `refused ${chunk.kind} upload for ${chunk.jobId} from ${agent.agentId}: ${outcome.reason}`,
      );
      this.emit(
        'checkpoint_refused',
        `refused ${chunk.kind} of ${displayJobId(chunk.jobId)} at step ${chunk.step}: ${outcome.reason}`,
        { jobId: chunk.jobId, agentId: agent.agentId },
      );
      this.send(agent.peer, { ...ack, ok: false, reason: outcome.reason });
      return;
    }
    this.record({
      type: 'checkpoint_acked',
      jobId: chunk.jobId,
      epoch: chunk.epoch,
      kind: outcome.kind,
      checkpoint: outcome.ref,
    });
    const job = this.scheduler.get(chunk.jobId);
    if (job) {
      if (outcome.kind === 'checkpoint') {
        job.checkpoints = this.store.prune(chunk.jobId, [...job.checkpoints, outcome.ref]);
        this.scheduler.progress(chunk.jobId, outcome.ref.step, this.clock.now());
      } else if (job.state !== 'evaluating') {
        this.scheduler.progress(chunk.jobId, outcome.ref.step, this.clock.now());
        job.state = 'evaluating';
        this.record({ type: 'job_evaluating', jobId: chunk.jobId, epoch: chunk.epoch });
      }
    }
    this.log.info(
      { agentId: agent.agentId, jobId: chunk.jobId, step: chunk.step, bytes: chunk.totalBytes, kind: outcome.kind },
      `stored ${outcome.kind} of ${chunk.jobId} at step ${chunk.step}`,
    );
    this.send(agent.peer, { ...ack, ok: true });
  }

  private async onCheckpointRequest(agent: AgentRecord, req: CheckpointRequest): Promise<void> {
    const job = this.scheduler.get(req.jobId);
    const ref = job?.checkpoints.find((c) => c.checkpointId === req.checkpointId);
    if (!job || !ref) {
      this.send(agent.peer, {
        type: 'error',
        error: {
          name: 'CheckpointNotFound',
          message: `no checkpoint ${req.checkpointId} for ${req.jobId}`,
          retryable: false,
        },
        context: 'checkpoint_request',
      });
      return;
    }
    let blob: Uint8Array;
    try {
      blob = this.store.read(ref);
    } catch (error) {
      this.log.error({ jobId: req.jobId, err: error }, `cannot read checkpoint ${ref.file}`);
      this.send(agent.peer, { type: 'error', error: wire(error), context: 'checkpoint_request' });
      return;
    }
    const chunks = chunksOf(blob, {
      jobId: req.jobId,
      epoch: req.epoch,
      checkpointId: ref.checkpointId,
      kind: 'checkpoint',
      step: ref.step,
      sha256: ref.sha256,
    });
    // Sent one after the other so a big checkpoint does not flood the socket's queue.
    for (const c of chunks) {
      if (this.lifecycle === 'stopped') return;
      await this.transport
        .send(agent.peer, c)
        .catch((error: unknown) => this.log.warn({ err: error }, 'checkpoint send failed'));
    }
    this.log.info(
      { agentId: agent.agentId, jobId: req.jobId, step: ref.step, bytes: ref.totalBytes },
      `streamed checkpoint of ${req.jobId} at step ${ref.step} to ${agent.agentId}`,
    );
  }

  private onResult(agent: AgentRecord, result: JobResult): void {
    const jobId = result.jobId;
    this.sink.writeEvaluation(jobId, result.evaluation);
    this.sink.flush();
    this.record({ type: 'job_done', jobId, epoch: result.epoch });
    const job = this.scheduler.finish(jobId, this.clock.now());
    this.freeAgent(agent);
    const em = result.evaluation.exactMatch;
    this.log.info({ agentId: agent.agentId, jobId, exactMatch: em }, `${jobId} finished on ${agent.agentId}`);
    this.emit(
      'finished',
      `${displayJobId(jobId)} finished on ${agent.agentId}: exact match ${Number.isFinite(em) ? (em * 100).toFixed(1) + '%' : '-'} (attempt ${job.attempt})`,
      { jobId, agentId: agent.agentId },
    );
    this.schedule();
    this.checkFinished();
  }

  private onFailed(agent: AgentRecord, failed: JobFailed): void {
    const jobId = failed.jobId;
    this.freeAgent(agent);
    this.store.dropUploads(jobId);
    if (!failed.error.retryable) {
      this.failJob(
        jobId,
        failed.error,
        `${displayJobId(jobId)} failed on ${agent.agentId}: ${failed.error.message} (not retryable)`,
      );
    } else {
      const job = this.scheduler.get(jobId);
      this.requeue(jobId, `failed on ${agent.agentId}: ${failed.error.message}`, true, failed.error);
      this.log.warn(
        { agentId: agent.agentId, jobId, err: failed.error },
        `${jobId} failed on ${agent.agentId} (retryable) at step ${job?.step ?? 0}`,
      );
    }
    this.schedule();
    this.checkFinished();
  }

  // ------------------------------------------------------------------------------------------
  // Membership and failure

  private heardFrom(agent: AgentRecord): void {
    agent.lastHeardAt = this.clock.now();
    if (agent.suspect) {
      agent.suspect = false;
      this.log.info({ agentId: agent.agentId }, `agent ${agent.agentId} is heard from again`);
      this.emit('recovered', `${agent.agentId} is back`, { agentId: agent.agentId });
    }
  }

  private tick(): void {
    if (this.lifecycle !== 'running' && this.lifecycle !== 'draining') return;
    try {
      const now = this.clock.now();
      const verdicts = this.detector.check(now, this.agents.values(), (jobId) => {
        const j = this.scheduler.get(jobId);
        return (
          j && { state: j.state, step: j.step, totalSteps: j.spec.training.steps, lastProgressAt: j.lastProgressAt }
        );
      });
      for (const v of verdicts) {
        const agent = this.agents.get(v.agentId);
        if (!agent) continue;
        if (v.verdict === 'suspect') {
          agent.suspect = true;
          this.log.warn(
            { agentId: agent.agentId, silentMs: v.silentMs },
            `agent ${agent.agentId} is suspect: silent for ${v.silentMs} ms`,
          );
          this.emit('suspect', `${agent.agentId} suspect: silent ${(v.silentMs / 1000).toFixed(1)} s`, {
            agentId: agent.agentId,
          });
        } else if (v.verdict === 'alive') {
          agent.suspect = false;
        } else {
          this.agentLost(agent, v.reason);
        }
      }
      this.schedule();
    } catch (error) {
      this.log.error({ err: error }, 'failure detector tick failed');
    }
  }

  private onLauncherExit(exit: AgentExit): void {
    try {
      // Batch launchers do not know the pid (they report 0): the scheduler's id (hello.launcherId) says which agent.
      const batch = exit.pid <= 0;
      const agent = [...this.agents.values()].find((a) =>
        batch
          ? exit.launcherId !== undefined && a.launcherId === exit.launcherId
          : a.pid === exit.pid &&
            (exit.launcherId === undefined ||
              a.launcherId === undefined ||
              a.launcherId === exit.launcherId ||
              a.agentId === exit.launcherId),
      );
      const how = exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
      const what = batch ? `task ${exit.launcherId ?? '?'}` : `process ${exit.pid}`;
      this.log.info(
        { pid: exit.pid, launcherId: exit.launcherId, code: exit.code, signal: exit.signal },
        `launcher: ${what} exited (${how})`,
      );
      if (agent && this.lifecycle !== 'stopped') this.agentLost(agent, `${what} exited (${how})`);
      for (const w of this.byeWaiters.splice(0)) w();
    } catch (error) {
      this.log.error({ err: error }, 'handling a launcher exit failed');
    }
  }

  /** Declared dead: forget it (its later messages get reject) and move its job. */
  private agentLost(agent: AgentRecord, reason: string): void {
    this.removeAgent(agent, 'lost', reason, true);
  }

  private removeAgent(agent: AgentRecord, how: 'lost' | 'left', reason: string, countAttempt: boolean): void {
    if (!this.agents.has(agent.agentId)) return;
    this.record(
      how === 'lost'
        ? { type: 'agent_lost', agentId: agent.agentId, reason }
        : { type: 'agent_left', agentId: agent.agentId, reason },
    );
    this.agents.delete(agent.agentId);
    if (this.byPeer.get(agent.peer) === agent.agentId) this.byPeer.delete(agent.peer);
    const jobId = agent.jobId;
    const job = jobId === undefined ? undefined : this.scheduler.get(jobId);
    if (
      jobId !== undefined &&
      job &&
      job.agentId === agent.agentId &&
      (job.state === 'assigned' || job.state === 'running' || job.state === 'evaluating')
    ) {
      const at = job.step;
      this.store.dropUploads(jobId);
      this.requeue(jobId, `${how} ${agent.agentId}: ${reason}`, countAttempt);
      const text = `${displayJobId(jobId)} ${how === 'lost' ? 'lost' : 'released'} on ${agent.agentId} at step ${at} (${reason})`;
      this.log.warn({ agentId: agent.agentId, jobId, step: at, reason }, text);
      this.emit(how, text, { jobId, agentId: agent.agentId });
    } else {
      this.log.warn({ agentId: agent.agentId, reason }, `agent ${agent.agentId} ${how}: ${reason}`);
      this.emit(how, `${agent.agentId} ${how}: ${reason}`, { agentId: agent.agentId });
    }
    if (this.lifecycle === 'running') this.schedule();
  }

  private requeue(jobId: JobId, reason: string, countAttempt: boolean, error?: WireError): void {
    const job = this.scheduler.get(jobId);
    if (!job) return;
    this.record({ type: 'job_requeued', jobId, reason, epoch: job.epoch, step: job.step });
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

  private failJob(jobId: JobId, error: WireError, text: string): void {
    this.record({ type: 'job_failed', jobId, epoch: this.scheduler.get(jobId)?.epoch ?? 0, error });
    this.scheduler.fail(jobId, error, this.clock.now());
    this.log.error({ jobId, err: error }, text);
    this.emit('failed', text, { jobId });
  }

  private freeAgent(agent: AgentRecord): void {
    delete agent.jobId;
    if (agent.state === 'busy') agent.state = 'idle';
  }

  // ------------------------------------------------------------------------------------------
  // Scheduling

  private schedule(): void {
    if (this.lifecycle !== 'running') return;
    const candidates = [...this.agents.values()]
      .filter((a) => !a.suspect)
      .map((a) => {
        const p: PlaceableAgent = {
          agentId: a.agentId,
          backend: a.backend,
          devices: a.devices,
          state: a.state,
          joinedAt: a.joinedAt,
        };
        if (a.jobId !== undefined) p.jobId = a.jobId;
        return p;
      });
    const placements = this.scheduler.placements(candidates);
    for (const { jobId, agentId } of placements) {
      const agent = this.agents.get(agentId);
      if (!agent) continue;
      this.assign(jobId, agent);
    }
    // Idle agents and pending jobs but nothing placed: the jobs' needs match no agent here. Say so once,
    // rather than wait in silence (e.g. a GPU experiment started on a laptop).
    if (
      placements.length === 0 &&
      !this.warnedNeeds &&
      candidates.some((a) => a.state === 'idle' && a.jobId === undefined)
    ) {
      const pending = this.scheduler
        .pending()
        .map((id) => this.scheduler.get(id))
        .filter((j) => j !== undefined);
      const first = pending[0];
      if (first?.spec.needs !== undefined) {
        this.warnedNeeds = true;
        const text = `${pending.length} pending jobs need ${JSON.stringify(first.spec.needs)}; no idle agent matches (agents: ${[...new Set(candidates.map((a) => a.backend))].join(', ')})`;
        this.log.warn({ needs: first.spec.needs }, text);
        this.emit('unplaceable', text);
      }
    }
  }

  private warnedNeeds = false;

  private assign(jobId: JobId, agent: AgentRecord): void {
    const before = this.scheduler.get(jobId);
    if (!before) return;
    const last = before.checkpoints.at(-1);
    const lost = before.lost;
    const entry: JournalEntry = {
      type: 'job_assigned',
      jobId,
      agentId: agent.agentId,
      attempt: before.attempt + 1,
      epoch: before.epoch + 1,
    };
    if (last) entry.resumeStep = last.step;
    this.record(entry);
    const job = this.scheduler.assign(jobId, agent.agentId, this.clock.now());
    agent.state = 'busy';
    agent.jobId = jobId;
    agent.assignedAt = this.clock.now();
    const assign: CoordinatorToAgent = { type: 'assign', job: job.spec, attempt: job.attempt, epoch: job.epoch };
    if (last)
      assign.resumeFrom = {
        checkpointId: last.checkpointId,
        step: last.step,
        totalBytes: last.totalBytes,
        sha256: last.sha256,
      };
    this.send(agent.peer, assign);
    const name = displayJobId(jobId);
    if (lost) {
      const text = `${name} lost on ${lost.agentId} at step ${lost.step}; resumed on ${agent.agentId} from step ${last?.step ?? 0}`;
      this.log.warn(
        {
          jobId,
          from: lost.agentId,
          to: agent.agentId,
          lostStep: lost.step,
          resumeStep: last?.step ?? 0,
          attempt: job.attempt,
          epoch: job.epoch,
        },
        text,
      );
      this.emit('reassigned', text, { jobId, agentId: agent.agentId });
      delete job.lost;
    } else {
      this.log.info(
        { jobId, agentId: agent.agentId, attempt: job.attempt, epoch: job.epoch, resumeStep: last?.step },
        `assigned ${jobId} to ${agent.agentId}`,
      );
      this.emit('assigned', `${name} -> ${agent.agentId}${last ? ` (from step ${last.step})` : ''}`, {
        jobId,
        agentId: agent.agentId,
      });
    }
  }

  private checkFinished(): void {
    if (this.lifecycle !== 'running' || !this.scheduler.allFinished()) return;
    void this.finishRun();
  }

  private async finishRun(): Promise<void> {
    const c = this.scheduler.counts();
    this.record({ type: 'run_finished', done: c.done, failed: c.failed });
    let report: ComparisonReport | undefined;
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
    this.log.info({ reason, agents: this.agents.size }, `draining: ${reason}`);
    const signalled = new Set(checkpoint && this.launcher?.signalAll ? this.launcher.signalAll('SIGTERM') : []);
    for (const agent of this.agents.values()) {
      if (!signalled.has(agent.pid)) this.send(agent.peer, { type: 'shutdown', reason });
    }
    // Wait (bounded) for every agent's bye; during this the loop still accepts checkpoints.
    const deadline = this.clock.now() + this.drainMs;
    while (this.agents.size > 0 && this.clock.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = this.clock.setTimeout(resolve, Math.min(200, Math.max(1, deadline - this.clock.now())));
        this.byeWaiters.push(() => {
          this.clock.clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private closing: Promise<RunOutcome> | undefined;

  /** Idempotent: a second caller waits for the first close to finish (files flushed, transport closed). */
  private close(reason: string, stopped: boolean, report?: ComparisonReport): Promise<RunOutcome> {
    this.closing ??= this.closeOnce(reason, stopped, report);
    return this.closing;
  }

  private async closeOnce(reason: string, stopped: boolean, report: ComparisonReport | undefined): Promise<RunOutcome> {
    this.lifecycle = 'stopped';
    this.clock.clearInterval(this.ticker);
    const c = this.scheduler.counts();
    this.outcome = { done: c.done, failed: c.failed, stopped };
    if (report) this.outcome.report = report;
    try {
      this.record({ type: 'coordinator_stopped', reason });
    } catch (error) {
      this.log.error({ err: error }, 'journal close failed');
    }
    this.journal.close();
    for (const { to, message } of this.held.splice(0)) this.sendNow(to, message);
    await this.sink.close();
    await this.transport.close().catch(() => undefined);
    await this.loop;
    this.resolveDone(this.outcome);
    return this.outcome;
  }

  // ------------------------------------------------------------------------------------------
  // Restart from the journal

  private restore(run: ReplayedRun): void {
    const now = this.clock.now();
    for (const [jobId, r] of run.jobs) {
      const job = this.scheduler.get(jobId);
      if (!job) continue;
      // Only checkpoints whose files survived count.
      const checkpoints = r.checkpoints
        .filter((c) => existsSync(join(this.runDir, c.file)))
        .slice(-this.experiment.cluster.keepCheckpoints);
      const patch: Partial<JobState> = {
        attempt: r.attempt,
        epoch: r.epoch,
        checkpoints,
        step: checkpoints.at(-1)?.step ?? 0,
        lastProgressAt: now,
      };
      if (r.state === 'done') {
        patch.state = 'done';
        patch.step = job.spec.training.steps;
      } else if (r.state === 'failed') {
        patch.state = 'failed';
        if (r.error) patch.error = r.error;
      } else {
        patch.state = 'pending';
        // Losing a job to a coordinator restart is not the job's fault.
        if (r.state !== 'pending') patch.attempt = Math.max(0, r.attempt - 1);
      }
      this.scheduler.restore(jobId, patch);
      if (r.state === 'running' || r.state === 'assigned' || r.state === 'evaluating') {
        this.record({
          type: 'job_requeued',
          jobId,
          reason: 'coordinator restarted',
          epoch: r.epoch,
          step: patch.step ?? 0,
        });
      }
    }
    this.log.info({ runId: run.runId, ...this.scheduler.counts() }, `resumed run ${run.runId} from its journal`);
  }

  // ------------------------------------------------------------------------------------------

  private record(entry: JournalEntry): void {
    this.journal.append(entry);
    this.scheduleSync();
  }

  /**
   * Group commit: one fsync per burst of journal entries (one fsync per entry stalls the loop for seconds when a
   * thousand agents join at once). Messages queued meanwhile leave only after the fsync, so nothing acts on a
   * state change that a crash could still erase.
   */
  private scheduleSync(): void {
    if (this.syncScheduled) return;
    this.syncScheduled = true;
    setImmediate(() => this.syncNow());
  }

  private syncScheduled = false;
  private held: { to: PeerId; message: CoordinatorToAgent }[] = [];

  private syncNow(): void {
    this.syncScheduled = false;
    try {
      this.journal.sync();
    } catch (error) {
      this.log.error({ err: error }, 'journal fsync failed');
    }
    const held = this.held;
    this.held = [];
    for (const { to, message } of held) this.sendNow(to, message);
  }

  private send(to: PeerId, message: CoordinatorToAgent): void {
    if (this.journal.pending || this.held.length > 0) {
      this.held.push({ to, message });
      this.scheduleSync();
      return;
    }
    this.sendNow(to, message);
  }

  private sendNow(to: PeerId, message: CoordinatorToAgent): void {
    this.transport.send(to, message).catch((error: unknown) => {
      // A vanished peer is routine (debug); anything else dropped is worth a warning.
      const level =
        message.type === 'heartbeat_ack' || /unreachable|EHOSTUNREACH/i.test(String(error)) ? 'debug' : 'warn';
      this.log[level](
        { peer: to, type: message.type, err: error },
        `send of ${message.type} to ${to} failed: ${(error as Error).message}`,
      );
    });
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

function wire(error: unknown): WireError {
  if (error instanceof Error) {
    const retryable = (error as { retryable?: unknown }).retryable;
    return { name: error.name, message: error.message, retryable: typeof retryable === 'boolean' ? retryable : false };
  }
  return { name: 'Error', message: String(error), retryable: false };
}
