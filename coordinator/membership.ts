// Membership: who is in the run. Hello (welcome or reject), recognising a reconnected agent, heartbeats, the
// failure detector's tick, launcher exit reports, and removal (lost or left), which moves the agent's job.
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import type { AgentId, AgentToCoordinator, Heartbeat, Hello, JobId } from '../protocol/messages.ts';
import type { PeerId } from '../protocol/transport.ts';
import { negotiate } from '../protocol/handshake.ts';
import { freeAgent } from './context.ts';
import type { AgentRecord, CoordinatorContext } from './context.ts';
import { displayJobId } from './experiment.ts';
import { FailureDetector } from './failure-detector.ts';
import type { JournalEntry } from './journal.ts';
import type { AgentExit } from './launchers/types.ts';

export class Membership {
  readonly agents = new Map<AgentId, AgentRecord>();
  private readonly byPeer = new Map<PeerId, AgentId>();
  private readonly detector: FailureDetector;
  private departure = departureSignal();

  constructor(private readonly ctx: CoordinatorContext) {
    this.detector = new FailureDetector(ctx.experiment.cluster);
  }

  /** Resolves when the next agent says bye or its process exits (a draining coordinator waits on it). */
  nextDeparture(): Promise<void> {
    return this.departure.promise;
  }

  withLauncherId(launcherId: string): AgentRecord | undefined {
    return [...this.agents.values()].find((a) => a.launcherId === launcherId);
  }

  onHello(from: PeerId, hello: Hello): void {
    const { ctx } = this;
    const verdict = negotiate(hello);
    if (!verdict.ok) {
      ctx.log.warn(
        { peer: from, agentId: hello.agentId, ours: PROTOCOL_VERSION, theirs: hello.version },
        verdict.logLine,
      );
      ctx.outbox.send(from, verdict.reject);
      ctx.emit(
        'rejected',
        `rejected ${hello.agentId}@${hello.host}: protocol version ${hello.version}, ours is ${PROTOCOL_VERSION}`,
        { agentId: hello.agentId },
      );
      return;
    }
    if (ctx.lifecycle() !== 'running') {
      ctx.outbox.send(from, { type: 'reject', reason: 'the coordinator is shutting down', version: PROTOCOL_VERSION });
      return;
    }
    // A known id saying hello again is a new incarnation: whatever the old one held is lost.
    const old = this.agents.get(hello.agentId);
    if (old) this.lost(old, 'said hello again (restarted)');
    const previous = this.byPeer.get(from);
    if (previous !== undefined) {
      const prevAgent = this.agents.get(previous);
      if (prevAgent) this.lost(prevAgent, 'rejoined as a fresh agent');
    }
    const agent = this.join(from, hello);
    ctx.log.info(
      { peer: from, agentId: agent.agentId, host: agent.host, pid: agent.pid, backend: agent.backend },
      `agent ${agent.agentId} joined from ${agent.host} (pid ${agent.pid}, ${agent.backend})`,
    );
    ctx.outbox.send(from, {
      type: 'welcome',
      version: PROTOCOL_VERSION,
      agentId: agent.agentId,
      runId: ctx.runId,
      heartbeatIntervalMs: ctx.experiment.cluster.heartbeatIntervalMs,
    });
    ctx.emit('joined', `${agent.agentId}@${agent.host} joined (${agent.backend})`, { agentId: agent.agentId });
    ctx.schedule();
  }

  /**
   * The agent a message comes from: known by its peer, or reclaimed after a reconnect. An unknown sender (or one
   * claiming another agent's id) gets a reject and undefined.
   */
  identify(from: PeerId, message: AgentToCoordinator): AgentRecord | undefined {
    const agentId = this.byPeer.get(from);
    const claimed = message.type === 'heartbeat' || message.type === 'bye' ? message.agentId : undefined;
    const agent = agentId === undefined ? this.reclaim(from, message, claimed) : this.agents.get(agentId);
    if (agent !== undefined && (claimed === undefined || claimed === agent.agentId)) return agent;
    const who = claimed ?? agentId ?? 'unknown';
    this.ctx.log.warn(
      { peer: from, agentId: who, type: message.type },
      `rejected ${message.type} from unknown agent ${who} (peer ${from})`,
    );
    this.ctx.outbox.send(from, {
      type: 'reject',
      reason: `unknown agent ${who}: say hello again with a fresh agentId`,
      version: PROTOCOL_VERSION,
    });
    return undefined;
  }

  heardFrom(agent: AgentRecord): void {
    agent.lastHeardAt = this.ctx.clock.now();
    if (agent.suspect) {
      agent.suspect = false;
      this.ctx.log.info({ agentId: agent.agentId }, `agent ${agent.agentId} is heard from again`);
      this.ctx.emit('recovered', `${agent.agentId} is back`, { agentId: agent.agentId });
    }
  }

  onHeartbeat(agent: AgentRecord, hb: Heartbeat): void {
    const { ctx } = this;
    ctx.outbox.send(agent.peer, { type: 'heartbeat_ack', seq: hb.seq, time: ctx.clock.now() });
    if (hb.state === 'draining' && agent.state !== 'draining') agent.state = 'draining';
    // An agent that says it is idle while we think it holds a job lost the assignment (or dropped the job
    // without telling): give the job to someone else rather than wait for the watchdog.
    if (hb.state === 'idle' && agent.jobId !== undefined) {
      const grace = Math.max(3 * ctx.experiment.cluster.heartbeatIntervalMs, 2000);
      if (ctx.clock.now() - (agent.assignedAt ?? 0) > grace) {
        const jobId = agent.jobId;
        freeAgent(agent);
        const job = ctx.scheduler.get(jobId);
        if (job && job.agentId === agent.agentId && job.state !== 'done' && job.state !== 'failed') {
          ctx.store.dropUploads(jobId);
          ctx.requeue(jobId, `${agent.agentId} reports idle`, false);
          ctx.log.warn(
            { agentId: agent.agentId, jobId },
            `${agent.agentId} reports idle while holding ${jobId}: re-queued`,
          );
        }
        ctx.schedule();
      }
    }
    if (hb.state === 'busy' && hb.jobId !== undefined && hb.epoch !== undefined) {
      if (!ctx.scheduler.isCurrent(hb.jobId, hb.epoch, agent.agentId)) {
        this.dropStale(agent, hb.jobId, hb.epoch, 'heartbeat');
        return;
      }
      if (hb.step !== undefined) ctx.scheduler.progress(hb.jobId, hb.step, ctx.clock.now());
    }
  }

  onBye(agent: AgentRecord, reason: string): void {
    this.ctx.log.info({ agentId: agent.agentId, reason }, `agent ${agent.agentId} said bye: ${reason}`);
    this.remove(agent, 'left', reason, false);
    this.departed();
  }

  /** Fencing: a job message counts only if it carries the job's current epoch and comes from its agent. */
  fenced(agent: AgentRecord, message: { type: string; jobId: JobId; epoch: number }): boolean {
    if (this.ctx.scheduler.isCurrent(message.jobId, message.epoch, agent.agentId)) return true;
    this.dropStale(agent, message.jobId, message.epoch, message.type);
    return false;
  }

  /** The failure detector's periodic check: suspect the silent, remove the dead and the stuck. */
  tick(): void {
    const { ctx } = this;
    const now = ctx.clock.now();
    const verdicts = this.detector.check(now, this.agents.values(), (jobId) => {
      const j = ctx.scheduler.get(jobId);
      return j && { state: j.state, step: j.step, totalSteps: j.spec.training.steps, lastProgressAt: j.lastProgressAt };
    });
    for (const v of verdicts) {
      const agent = this.agents.get(v.agentId);
      if (!agent) continue;
      if (v.verdict === 'suspect') {
        agent.suspect = true;
        ctx.log.warn(
          { agentId: agent.agentId, silentMs: v.silentMs },
          `agent ${agent.agentId} is suspect: silent for ${v.silentMs} ms`,
        );
        ctx.emit('suspect', `${agent.agentId} suspect: silent ${(v.silentMs / 1000).toFixed(1)} s`, {
          agentId: agent.agentId,
        });
      } else if (v.verdict === 'alive') {
        agent.suspect = false;
      } else {
        this.lost(agent, v.reason);
      }
    }
  }

  onLauncherExit(exit: AgentExit): void {
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
    this.ctx.log.info(
      { pid: exit.pid, launcherId: exit.launcherId, code: exit.code, signal: exit.signal },
      `launcher: ${what} exited (${how})`,
    );
    if (agent && this.ctx.lifecycle() !== 'stopped') this.lost(agent, `${what} exited (${how})`);
    this.departed();
  }

  /** Declared dead: forget it (its later messages get reject) and move its job. */
  lost(agent: AgentRecord, reason: string): void {
    this.remove(agent, 'lost', reason, true);
  }

  private join(from: PeerId, hello: Hello): AgentRecord {
    const now = this.ctx.clock.now();
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
    this.ctx.outbox.record(entry);
    this.agents.set(agent.agentId, agent);
    this.byPeer.set(from, agent.agentId);
    return agent;
  }

  /**
   * A known agent whose connection came back under a new routing id (ZeroMQ gives a reconnecting DEALER a new
   * one): recognised by the agentId it names, or by carrying the current epoch of the job it holds.
   */
  private reclaim(from: PeerId, message: AgentToCoordinator, claimed: AgentId | undefined): AgentRecord | undefined {
    let agent: AgentRecord | undefined;
    if (claimed !== undefined) agent = this.agents.get(claimed);
    else if ('jobId' in message && 'epoch' in message) {
      const job = this.ctx.scheduler.get(message.jobId);
      if (job && job.epoch === message.epoch && job.agentId !== undefined) agent = this.agents.get(job.agentId);
    }
    if (agent === undefined) return undefined;
    this.ctx.log.info(
      { agentId: agent.agentId, oldPeer: agent.peer, peer: from },
      `agent ${agent.agentId} reconnected as peer ${from}`,
    );
    if (this.byPeer.get(agent.peer) === agent.agentId) this.byPeer.delete(agent.peer);
    agent.peer = from;
    this.byPeer.set(from, agent.agentId);
    return agent;
  }

  /** A message for an epoch the job no longer has: cancel it on the agent, which is then free. */
  private dropStale(agent: AgentRecord, jobId: JobId, epoch: number, what: string): void {
    const { ctx } = this;
    const job = ctx.scheduler.get(jobId);
    const current =
      job === undefined
        ? 'unknown job'
        : `current epoch ${job.epoch}${job.agentId ? ` on ${job.agentId}` : ''}, ${job.state}`;
    ctx.log.warn(
      { peer: agent.peer, agentId: agent.agentId, jobId, epoch, type: what },
      `dropped stale ${what} for ${jobId} epoch ${epoch} from ${agent.agentId} (${current})`,
    );
    ctx.outbox.send(agent.peer, {
      type: 'cancel',
      jobId,
      epoch,
      reason: `stale epoch ${epoch} for ${jobId} (${current})`,
    });
    ctx.emit('stale', `dropped stale ${what} from ${agent.agentId} for ${displayJobId(jobId)} (epoch ${epoch})`, {
      jobId,
      agentId: agent.agentId,
    });
    // The agent thinks it holds a job we gave elsewhere: it is free once it has cancelled.
    if (agent.jobId === jobId) {
      delete agent.jobId;
      agent.state = 'idle';
    }
  }

  private remove(agent: AgentRecord, how: 'lost' | 'left', reason: string, countAttempt: boolean): void {
    const { ctx } = this;
    if (!this.agents.has(agent.agentId)) return;
    ctx.outbox.record(
      how === 'lost'
        ? { type: 'agent_lost', agentId: agent.agentId, reason }
        : { type: 'agent_left', agentId: agent.agentId, reason },
    );
    this.agents.delete(agent.agentId);
    if (this.byPeer.get(agent.peer) === agent.agentId) this.byPeer.delete(agent.peer);
    const jobId = agent.jobId;
    const job = jobId === undefined ? undefined : ctx.scheduler.get(jobId);
    if (jobId !== undefined && ctx.gangMemberGone(agent.agentId, jobId, `${how}: ${reason}`)) {
      ctx.log.warn(
        { agentId: agent.agentId, jobId, reason },
        `${agent.agentId} ${how} from the gang of ${jobId}: ${reason}`,
      );
      ctx.emit(how, `${agent.agentId} ${how} (gang of ${displayJobId(jobId)}): ${reason}`, {
        jobId,
        agentId: agent.agentId,
      });
    } else if (
      jobId !== undefined &&
      job &&
      job.agentId === agent.agentId &&
      (job.state === 'assigned' || job.state === 'running' || job.state === 'evaluating')
    ) {
      const at = job.step;
      ctx.store.dropUploads(jobId);
      ctx.requeue(jobId, `${how} ${agent.agentId}: ${reason}`, countAttempt);
      const text = `${displayJobId(jobId)} ${how === 'lost' ? 'lost' : 'released'} on ${agent.agentId} at step ${at} (${reason})`;
      ctx.log.warn({ agentId: agent.agentId, jobId, step: at, reason }, text);
      ctx.emit(how, text, { jobId, agentId: agent.agentId });
    } else {
      ctx.log.warn({ agentId: agent.agentId, reason }, `agent ${agent.agentId} ${how}: ${reason}`);
      ctx.emit(how, `${agent.agentId} ${how}: ${reason}`, { agentId: agent.agentId });
    }
    if (ctx.lifecycle() === 'running') {
      ctx.schedule();
      ctx.agentGone();
    }
  }

  private departed(): void {
    this.departure.resolve();
    this.departure = departureSignal();
  }
}

function departureSignal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
