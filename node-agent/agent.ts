// The compute-node actor. It says hello, heartbeats, runs one job at a time (job-session.ts: the worker and the
// checkpoint transfers), streams the job's metrics in batches, and leaves cleanly: on `shutdown`, on SIGTERM/SIGINT
// (after checkpointing), or when the coordinator has been silent past the death timeout. Transport, clock and
// runner are injected so logic tests run on the memory transport and a SimulatedClock; the process around it
// (options, logger, signals) is run.ts.
import type { Logger } from 'pino';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { metricsMessage } from '../protocol/metric-columns.ts';
import type {
  AgentId,
  AgentToCoordinator,
  Assign,
  CheckpointChunk,
  CheckpointId,
  CoordinatorToAgent,
  JobSpec,
} from '../protocol/messages.ts';
import { systemClock, type TimerHandle } from '../protocol/clock.ts';
import { raceDeadline, settledWithin, TIMED_OUT } from '../protocol/deadline.ts';
import { newAgentId } from '../protocol/ids.ts';
import { toWireError } from '../protocol/errors.ts';
import { AGENT_EXIT, type AgentConfig, type AgentDeps, type AgentExit, type AgentExitCode } from './agent-config.ts';
import { JobSession, type JobPhase, type JobSessionHost } from './job-session.ts';
import { MetricsBuffer } from './metrics-buffer.ts';
import { Outbox } from './outbox.ts';
import { AgentBusyError } from './errors.ts';

export type AgentState = 'connecting' | 'ready' | 'draining' | 'stopped';

/** Saying hello until welcomed; `rejoining` once welcomed before (a reject after the welcome started us over). */
interface Connecting {
  kind: 'connecting';
  rejoining: boolean;
  helloTimer: TimerHandle | undefined;
}

/** Welcomed: heartbeats go out at the coordinator's interval. */
interface Welcomed {
  kind: 'welcomed';
  heartbeatTimer: TimerHandle;
}

/** Where the agent stands with the coordinator, apart from leaving. */
type Link = Connecting | Welcomed;

/** The agent's one lifecycle: a drain keeps the link it had (a welcome can still come), stopped keeps nothing. */
type Connection = Link | { kind: 'draining'; link: Link } | { kind: 'stopped'; exit: AgentExit };

export class NodeAgent {
  private conn: Connection = { kind: 'connecting', rejoining: false, helloTimer: undefined };
  private agentIdNow: AgentId;
  /** The interval the last welcome asked for; it also sets how long a silence means the coordinator is away. */
  private heartbeatIntervalMs = 1_000;
  private heartbeatSeq = 0;
  private deathTimer: TimerHandle | undefined;
  private flushTimer: TimerHandle | undefined;
  private lastHeardAt: number;
  private job: JobSession | undefined;
  private readonly metrics: MetricsBuffer;
  private readonly outbox: Outbox;
  /** Lines carry the current agent id; replaced when the agent rejoins under a fresh one. */
  private log: Logger;
  private exitResolve!: (exit: AgentExit) => void;
  /** Resolves once the agent has stopped, with its exit code and the reason. */
  readonly exited: Promise<AgentExit>;

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.agentIdNow = config.agentId;
    this.log = deps.logger.child({ agentId: config.agentId });
    this.lastHeardAt = deps.clock.now();
    this.metrics = new MetricsBuffer(config.maxMetricBuffer);
    this.outbox = new Outbox(deps.transport, () => this.log);
    this.exited = new Promise((resolve) => {
      this.exitResolve = resolve;
    });
  }

  get state(): AgentState {
    const c = this.conn;
    if (c.kind === 'connecting') return c.rejoining ? 'ready' : 'connecting';
    return c.kind === 'welcomed' ? 'ready' : c.kind;
  }

  get agentId(): AgentId {
    return this.agentIdNow;
  }

  /** What the agent is doing, for tests and logs. */
  get current(): { jobId: string; epoch: number; step: number; phase: JobPhase } | undefined {
    const j = this.job;
    return j === undefined ? undefined : { jobId: j.spec.jobId, epoch: j.epoch, step: j.step, phase: j.phase };
  }

  get bufferedMetrics(): number {
    return this.metrics.size;
  }

  start(): void {
    void this.readLoop();
    this.sendHello();
    this.armDeathTimer();
  }

  /** The link to the coordinator, draining or not; undefined once stopped. */
  private get link(): Link | undefined {
    const c = this.conn;
    return c.kind === 'draining' ? c.link : c.kind === 'stopped' ? undefined : c;
  }

  private setLink(link: Link): void {
    const c = this.conn;
    if (c.kind === 'stopped') return;
    this.conn = c.kind === 'draining' ? { kind: 'draining', link } : link;
  }

  private get welcomed(): boolean {
    return this.link?.kind === 'welcomed';
  }

  // -------------------------------------------------------------------------------------------
  // Inbound

  private async readLoop(): Promise<void> {
    try {
      for await (const inbound of this.deps.transport.inbound()) {
        if (this.conn.kind === 'stopped') break;
        if (inbound.kind === 'malformed') {
          this.log.warn(
            { err: inbound.error, field: inbound.error.field },
            `malformed message from the coordinator: ${inbound.error.message}`,
          );
          continue;
        }
        this.heard();
        try {
          this.handle(inbound.message);
        } catch (error) {
          // Bad input must never take the agent down: log what and where, keep serving.
          this.log.error(
            { err: error, type: inbound.message.type },
            `failed to handle ${inbound.message.type}: ${(error as Error).message}`,
          );
        }
      }
    } catch (error) {
      this.log.error({ err: error }, 'transport inbound stream failed');
    }
    if (this.conn.kind !== 'stopped') this.log.warn('transport inbound stream ended; waiting for the death timeout');
  }

  private heard(): void {
    const wasAway = !this.coordinatorReachable();
    this.lastHeardAt = this.deps.clock.now();
    if (wasAway && this.metrics.size > 0) {
      this.log.info(
        { buffered: this.metrics.size, dropped: this.metrics.dropped },
        'coordinator is back; flushing buffered metrics',
      );
      this.flushMetrics(true);
    }
    if (wasAway) this.job?.coordinatorBack();
  }

  /** Heard from within a few heartbeats: otherwise metrics wait in the buffer instead of piling up in sockets. */
  private coordinatorReachable(): boolean {
    return this.deps.clock.now() - this.lastHeardAt < Math.max(3 * this.heartbeatIntervalMs, 2_000);
  }

  private handle(message: CoordinatorToAgent): void {
    switch (message.type) {
      case 'welcome':
        return this.onWelcome(message.agentId, message.heartbeatIntervalMs, message.runId);
      case 'reject':
        return this.onReject(message.reason, message.version);
      case 'heartbeat_ack':
        return;
      case 'assign':
        return this.onAssign(message);
      case 'cancel':
        return this.onCancel(message.jobId, message.epoch, message.reason);
      case 'gang_start':
      case 'gang_reform': {
        const gang =
          this.job?.spec.jobId === message.jobId && this.job.epoch === message.epoch ? this.job.gang : undefined;
        if (gang === undefined) {
          this.log.info(
            { jobId: message.jobId, epoch: message.epoch },
            `${message.type} for no gang seat of ours; ignored`,
          );
          return;
        }
        if (message.type === 'gang_start') gang.onStart(message);
        else gang.onReform(message);
        return;
      }
      case 'checkpoint_chunk':
        return this.onChunk(message);
      case 'checkpoint_ack':
        return this.onAck(message.jobId, message.epoch, message.checkpointId, message.ok, message.reason);
      case 'shutdown':
        this.log.info({ reason: message.reason }, 'coordinator asked us to shut down');
        // Checkpoint a running job first (bounded): a draining coordinator still accepts it, and a resumed run continues from it.
        void this.drain(`shutdown: ${message.reason}`, true);
        return;
      case 'error': {
        this.log.warn(
          { error: message.error, context: message.context },
          `coordinator reported an error: ${message.error.message}`,
        );
        // The coordinator could not serve our checkpoint_request: ask again now (bounded) rather than after a timeout.
        if (message.context === 'checkpoint_request')
          this.job?.onFetchRefused(`the coordinator answered: ${message.error.message}`);
        return;
      }
      case 'status':
        return;
    }
  }

  private onWelcome(agentId: AgentId, heartbeatIntervalMs: number, runId: string): void {
    const link = this.link;
    if (link?.kind !== 'connecting') return;
    if (agentId !== this.agentIdNow) {
      this.log.warn({ theirs: agentId, ours: this.agentIdNow }, 'welcome names another agent id; ignoring it');
      return;
    }
    this.heartbeatIntervalMs =
      Number.isFinite(heartbeatIntervalMs) && heartbeatIntervalMs >= 10 ? heartbeatIntervalMs : 1_000;
    this.deps.clock.clearTimeout(link.helloTimer);
    this.setLink({
      kind: 'welcomed',
      heartbeatTimer: this.deps.clock.setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs),
    });
    this.log.info({ runId, heartbeatIntervalMs: this.heartbeatIntervalMs }, 'welcomed by the coordinator');
  }

  private onReject(reason: string, version: number): void {
    const link = this.link;
    if (link === undefined) return;
    const rejected = (): void => {
      this.log.error({ reason, ours: PROTOCOL_VERSION, theirs: version }, `rejected by the coordinator: ${reason}`);
      this.finish({ code: AGENT_EXIT.rejected, reason });
    };
    if (link.kind === 'connecting') {
      // Never welcomed: the answer to our hello. Rejoining: more rejects answer messages sent before the first
      // one, unless the version changed.
      if (!link.rejoining || version !== PROTOCOL_VERSION) rejected();
      return;
    }
    if (this.conn.kind !== 'welcomed') return; // draining: we are leaving anyway, no point in rejoining
    // The coordinator no longer knows us (we were declared dead, or it restarted): drop the job, rejoin fresh.
    const old = this.agentIdNow;
    this.abandonJob(`rejected: ${reason}`);
    this.deps.clock.clearInterval(link.heartbeatTimer);
    this.setLink({ kind: 'connecting', rejoining: true, helloTimer: undefined });
    this.agentIdNow = newAgentId();
    this.log = this.deps.logger.child({ agentId: this.agentIdNow });
    this.log.warn({ reason, oldAgentId: old }, 'rejected after welcome; rejoining as a fresh agent');
    this.sendHello();
  }

  private onAssign(assign: Assign): void {
    const { job: spec, epoch, attempt } = assign;
    const current = this.job;
    if (this.conn.kind === 'draining' || this.conn.kind === 'stopped') {
      this.failAssignment(
        spec,
        epoch,
        new AgentBusyError(`agent ${this.agentIdNow} is draining and takes no new work`),
      );
      return;
    }
    if (current !== undefined) {
      if (current.spec.jobId === spec.jobId && current.epoch === epoch) return; // a duplicate
      if (current.spec.jobId === spec.jobId && epoch > current.epoch) {
        this.abandonJob(`reassigned with epoch ${epoch}`);
      } else {
        this.failAssignment(
          spec,
          epoch,
          new AgentBusyError(`agent ${this.agentIdNow} is busy with ${current.spec.jobId} (epoch ${current.epoch})`),
        );
        return;
      }
    }
    const job = new JobSession(assign, this.sessionHost());
    this.job = job;
    this.metrics.clear();
    this.log.info({ jobId: spec.jobId, epoch, attempt, resumeFrom: assign.resumeFrom }, `assigned ${spec.jobId}`);
    job.start();
    this.sendHeartbeat();
  }

  private sessionHost(): JobSessionHost {
    const { clock, runner } = this.deps;
    return {
      clock,
      runner,
      config: this.config,
      log: this.log,
      send: (message) => void this.outbox.send(message),
      reachable: () => this.coordinatorReachable(),
      metrics: (points) => {
        this.metrics.push(points);
        if (this.metrics.size >= this.config.metricsBatch) this.flushMetrics(false);
        else this.armFlushTimer();
      },
      flushMetrics: () => this.flushMetrics(true),
      gangPeers: this.config.gangPeers ?? { bind: 'tcp://127.0.0.1:0' },
      ended: (session, reported) => {
        if (this.job !== session) return;
        this.job = undefined;
        if (reported) this.sendHeartbeat();
      },
    };
  }

  private failAssignment(spec: JobSpec, epoch: number, error: Error): void {
    this.log.warn({ jobId: spec.jobId, epoch }, error.message);
    void this.outbox.send({ type: 'job_failed', jobId: spec.jobId, epoch, error: toWireError(error) });
  }

  private onCancel(jobId: string, epoch: number, reason: string): void {
    const job = this.job;
    if (job === undefined || job.spec.jobId !== jobId || epoch < job.epoch) {
      this.log.info({ jobId, epoch, reason }, 'cancel for a job we do not run; ignored');
      return;
    }
    this.abandonJob(`cancelled: ${reason}`);
    this.sendHeartbeat();
  }

  private onChunk(chunk: CheckpointChunk): void {
    const job = this.job;
    if (job === undefined || chunk.jobId !== job.spec.jobId || chunk.epoch !== job.epoch || !job.onChunk(chunk)) {
      this.log.debug(
        { jobId: chunk.jobId, epoch: chunk.epoch, checkpointId: chunk.checkpointId },
        'checkpoint chunk we did not ask for; ignored',
      );
    }
  }

  private onAck(
    jobId: string,
    epoch: number,
    checkpointId: CheckpointId,
    ok: boolean,
    reason: string | undefined,
  ): void {
    const job = this.job;
    if (job === undefined || job.spec.jobId !== jobId || job.epoch !== epoch || !job.onAck(checkpointId, ok, reason))
      this.log.debug({ jobId, epoch, checkpointId }, 'checkpoint_ack for no upload of ours; ignored');
  }

  /** Stop the job's worker and forget it, without telling the coordinator (it told us, or forgot us). */
  private abandonJob(why: string): void {
    const job = this.job;
    if (job === undefined) return;
    this.log.info({ jobId: job.spec.jobId, epoch: job.epoch }, `abandoning ${job.spec.jobId}: ${why}`);
    this.metrics.clear();
    void job.abandon();
  }

  // -------------------------------------------------------------------------------------------
  // Outbound

  private sendHello(): void {
    const hello: AgentToCoordinator = {
      type: 'hello',
      version: PROTOCOL_VERSION,
      agentId: this.agentIdNow,
      host: this.config.host,
      pid: this.config.pid,
      backend: this.config.backend,
      devices: this.config.devices,
      ...(this.config.launcherId === undefined ? {} : { launcherId: this.config.launcherId }),
    };
    let left = false;
    void this.outbox.send(hello).then((ok) => (left = ok));
    this.armHelloRetry(() => left);
  }

  /**
   * The hello may have reached a coordinator that then died; say it again until welcomed. Only once the last one
   * has left the socket: hellos queued while the coordinator is unreachable would all arrive together on connect,
   * and a coordinator takes a repeated hello as a restarted agent.
   */
  private armHelloRetry(left: () => boolean): void {
    const link = this.link;
    if (link?.kind !== 'connecting') return;
    this.deps.clock.clearTimeout(link.helloTimer);
    link.helloTimer = this.deps.clock.setTimeout(() => {
      if (this.link !== link) return; // welcomed or stopped since
      if (left()) this.sendHello();
      else this.armHelloRetry(left);
    }, this.config.helloRetryMs);
  }

  private sendHeartbeat(): void {
    if (!this.welcomed) return;
    const j = this.job;
    void this.outbox.send(
      {
        type: 'heartbeat',
        agentId: this.agentIdNow,
        seq: ++this.heartbeatSeq,
        time: this.deps.clock.now(),
        state: this.conn.kind === 'draining' ? 'draining' : j === undefined ? 'idle' : 'busy',
        ...(j === undefined ? {} : { jobId: j.spec.jobId, epoch: j.epoch, step: j.step }),
      },
      true,
    );
  }

  private armFlushTimer(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = this.deps.clock.setTimeout(() => {
      this.flushTimer = undefined;
      this.flushMetrics(false);
    }, this.config.metricsFlushMs);
  }

  /** Send buffered points in batches; unless forced, only while the coordinator is reachable. */
  private flushMetrics(force: boolean): void {
    this.deps.clock.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const job = this.job;
    if (job === undefined || this.metrics.size === 0) return;
    if (!force && !this.coordinatorReachable()) {
      // Keep them (bounded, oldest dropped) and look again later.
      this.armFlushTimer();
      return;
    }
    while (this.metrics.size > 0) {
      void this.outbox.send(metricsMessage(job.spec.jobId, job.epoch, this.metrics.take(this.config.metricsBatch)));
    }
  }

  // -------------------------------------------------------------------------------------------
  // Leaving

  private armDeathTimer(): void {
    this.deps.clock.clearTimeout(this.deathTimer);
    const silentFor = this.deps.clock.now() - this.lastHeardAt;
    this.deathTimer = this.deps.clock.setTimeout(
      () => {
        if (this.conn.kind === 'stopped') return;
        const silent = this.deps.clock.now() - this.lastHeardAt;
        if (silent >= this.config.deathTimeoutMs) {
          this.log.error(
            { silentMs: silent, deathTimeoutMs: this.config.deathTimeoutMs },
            'coordinator gone: nothing heard within the death timeout',
          );
          this.finish({
            code: AGENT_EXIT.coordinatorGone,
            reason: `nothing heard from the coordinator for ${silent} ms`,
          });
        } else {
          this.armDeathTimer();
        }
      },
      Math.max(1, this.config.deathTimeoutMs - silentFor),
    );
  }

  /**
   * Leave cleanly: no new work; with checkpoint, the running job is checkpointed and uploaded first (bounded by
   * drainTimeoutMs); then the worker is stopped, bye sent, and the agent exits 0.
   */
  async drain(reason: string, checkpoint: boolean): Promise<AgentExit> {
    const c = this.conn;
    if (c.kind === 'draining' || c.kind === 'stopped') return this.exited;
    this.conn = { kind: 'draining', link: c };
    this.log.info({ reason, checkpoint }, 'draining');
    this.sendHeartbeat();
    const job = this.job;
    if (checkpoint && job !== undefined && this.welcomed && (job.phase === 'training' || job.phase === 'finishing')) {
      // Bounded by drainTimeoutMs whatever happens: a PBS walltime kill follows SIGTERM within seconds.
      const raced = await raceDeadline(job.checkpointForDrain(), this.config.drainTimeoutMs, this.deps.clock);
      const outcome = raced === TIMED_OUT ? 'timeout' : raced;
      this.log.info(
        { jobId: job.spec.jobId, outcome },
        `drain: ${outcome === 'acked' ? 'drain checkpoint acknowledged' : outcome === 'ended' ? 'the job ended' : `no acknowledged checkpoint (${outcome})`}`,
      );
    }
    if (this.job !== undefined) this.abandonJob(`draining: ${reason}`);
    if (this.welcomed) void this.outbox.send({ type: 'bye', agentId: this.agentIdNow, reason });
    this.finish({ code: AGENT_EXIT.ok, reason });
    return this.exited;
  }

  /** Stop everything now (worker, timers, transport) and resolve `exited`. Idempotent. */
  private finish(exit: AgentExit): void {
    const link = this.link;
    if (link === undefined) return;
    const { clock } = this.deps;
    if (link.kind === 'welcomed') clock.clearInterval(link.heartbeatTimer);
    else clock.clearTimeout(link.helloTimer);
    clock.clearTimeout(this.deathTimer);
    clock.clearTimeout(this.flushTimer);
    this.deathTimer = this.flushTimer = undefined;
    const workerGone = this.job?.abandon();
    this.conn = { kind: 'stopped', exit };
    const queued = this.outbox.close();
    void (async () => {
      // Let queued messages (bye, job_failed) leave, but never wait on a socket with no peer for long. Real time,
      // not the injected clock: shutdown is bounded whatever a simulated clock does.
      await settledWithin(queued, 2_000, systemClock);
      if (this.config.closeGraceMs > 0) await systemClock.sleep(this.config.closeGraceMs);
      await workerGone;
      await this.deps.transport
        .close()
        .catch((error: unknown) => this.log.warn({ err: error }, 'closing the transport failed'));
      this.log.info({ code: exit.code, reason: exit.reason }, 'agent stopped');
      this.exitResolve(exit);
    })();
  }

  /** Stop at once (e.g. a second SIGINT), without draining. */
  stop(reason: string, code: AgentExitCode = AGENT_EXIT.ok): Promise<AgentExit> {
    this.finish({ code, reason });
    return this.exited;
  }
}
