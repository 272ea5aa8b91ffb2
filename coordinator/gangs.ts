// Gang membership of data-parallel jobs: the coordinator's half of gradient streaming (the ranks' half is
// node-agent/gang-link.ts). A gang lives in generations. Forming one: rank 0 is seated first, binds, and reports its
// address (gang_address), which is relayed to the other ranks with their seats (gang_start), so nothing needs a
// fixed port. When a member is lost, leaves, or reports its generation broken (gang_ready), or an idle agent can
// join, the gang reforms: every live member stops at a step boundary and reports its applied step; the ones that
// answered (or were heard from lately and then answered) make the next generation, and the ranks bring themselves
// in step from the member furthest on. Below minRanks, or when reforms keep failing, the job falls back to the
// ordinary requeue from its last acknowledged checkpoint. Every generation is journaled.
import type { AgentId, GangAddress, GangDone, GangReady, JobId } from '../protocol/messages.ts';
import type { TimerHandle } from '../protocol/clock.ts';
import { freeAgent, type AgentRecord, type CoordinatorContext } from './context.ts';
import { displayJobId } from './experiment.ts';
import type { JobState } from './scheduler.ts';

/** How long rank 0 may take to bind and every rank to join (worker start-up and a resume fetch included). */
const FORM_TIMEOUT_MS = 60_000;
/** Longest wait in a collective while a generation comes up; the ranks shorten it once they have measured steps. */
const COLLECTIVE_TIMEOUT_MS = 30_000;
/** Reforms in a row without a step of progress before the job falls back to a requeue. */
const MAX_FRUITLESS_REFORMS = 4;
/** How often a reform looks again at who it still waits for. */
const REFORM_CHECK_MS = 50;
/** Growth stops this close to the end of training: a joiner would cost more than it brings. */
const NO_GROWTH_AFTER = 0.9;

interface Reforming {
  kind: 'reforming';
  reason: string;
  /** Asked to stand at a step boundary, in the next generation's rank order (members first, then joiners). */
  candidates: AgentId[];
  /** Who answered, with the step each applied last. */
  ready: Map<AgentId, number>;
  /** Give up on the silent ones then. */
  deadline: number;
}

type Phase = { kind: 'forming'; deadline: number } | { kind: 'running' } | Reforming;

interface Gang {
  jobId: JobId;
  generation: number;
  members: AgentId[];
  phase: Phase;
  /** Loaded and waiting to join at the next reform. */
  joinersReady: Map<AgentId, number>;
  /** Members that trained the last step and left (ranks other than 0). */
  done: Set<AgentId>;
  fruitless: number;
  stepAtLastReform: number;
}

export class GangCoordinator {
  private readonly gangs = new Map<JobId, Gang>();
  private timer: TimerHandle | undefined;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly agents: ReadonlyMap<AgentId, AgentRecord>,
  ) {}

  /** A data-parallel job was just assigned to these agents (each got an assign with a gang seat): form generation 1. */
  start(job: JobState, members: AgentId[]): void {
    const gang: Gang = {
      jobId: job.spec.jobId,
      generation: job.gang?.generation ?? 0,
      members: [],
      phase: { kind: 'running' },
      joinersReady: new Map(),
      done: new Set(),
      fruitless: 0,
      stepAtLastReform: job.step,
    };
    this.gangs.set(gang.jobId, gang);
    this.form(gang, members, `placed on ${members.length} agents`);
  }

  isGangJob(jobId: JobId): boolean {
    return this.gangs.has(jobId);
  }

  onAddress(agent: AgentRecord, m: GangAddress): void {
    const gang = this.gangs.get(m.jobId);
    if (gang === undefined || gang.phase.kind !== 'forming' || m.generation !== gang.generation) return;
    if (gang.members[0] !== agent.agentId) return;
    const job = this.job(gang);
    gang.phase = { kind: 'running' };
    // A joiner that got ready while this generation formed joins at once.
    if (gang.joinersReady.size > 0)
      queueMicrotask(
        () => gang.phase.kind === 'running' && this.reform(gang, `${[...gang.joinersReady.keys()].join(', ')} joins`),
      );
    gang.members.forEach((agentId, rank) => {
      if (rank === 0) return;
      const peer = this.agents.get(agentId)?.peer;
      if (peer === undefined) return;
      this.ctx.outbox.send(peer, {
        type: 'gang_start',
        jobId: gang.jobId,
        epoch: job.epoch,
        generation: gang.generation,
        rank,
        ranks: gang.members.length,
        rootAddress: m.address,
        metricsFrom: job.metricsStep ?? 0,
        collectiveTimeoutMs: COLLECTIVE_TIMEOUT_MS,
      });
    });
  }

  onReady(agent: AgentRecord, m: GangReady): void {
    const gang = this.gangs.get(m.jobId);
    if (gang === undefined) return;
    const id = agent.agentId;
    const job = this.job(gang);
    if (job.joining?.includes(id) === true && !gang.members.includes(id)) {
      gang.joinersReady.set(id, m.step);
      if (gang.phase.kind === 'running') this.reform(gang, `${id} joins`);
      else if (gang.phase.kind === 'reforming' && !gang.phase.candidates.includes(id)) gang.phase.candidates.push(id);
      return;
    }
    if (!gang.members.includes(id)) return;
    const phase = gang.phase;
    if (phase.kind === 'reforming') {
      if (phase.candidates.includes(id)) phase.ready.set(id, m.step);
      this.check(gang);
      return;
    }
    // A member not yet seated in the generation being formed reports that it is loaded: its seat is on the way.
    if (m.generation < gang.generation) return;
    this.reform(gang, `${id} left generation ${m.generation}: ${m.reason}`);
    if (gang.phase.kind === 'reforming') gang.phase.ready.set(id, m.step);
    this.check(gang);
  }

  /** A rank other than 0 trained the last step: it is free for other work. */
  onDone(agent: AgentRecord, m: GangDone): void {
    const gang = this.gangs.get(m.jobId);
    if (gang === undefined || !gang.members.includes(agent.agentId)) return;
    gang.done.add(agent.agentId);
    if (agent.jobId === m.jobId) freeAgent(agent);
    this.ctx.schedule();
  }

  /**
   * A member is gone (lost, left, or its session failed): the gang reforms without it. False when the gang cannot
   * carry on without it (rank 0 after the last step: the job is requeued as any other).
   */
  memberGone(agentId: AgentId, jobId: JobId, reason: string): boolean {
    const gang = this.gangs.get(jobId);
    if (gang === undefined) return false;
    const job = this.job(gang);
    if (job.joining?.includes(agentId) === true && !gang.members.includes(agentId)) {
      job.joining = job.joining.filter((a) => a !== agentId);
      gang.joinersReady.delete(agentId);
      if (gang.phase.kind === 'reforming') gang.phase.candidates = gang.phase.candidates.filter((a) => a !== agentId);
      this.check(gang);
      return true;
    }
    if (!gang.members.includes(agentId) || gang.done.has(agentId)) return true;
    if (job.state === 'evaluating' || job.state === 'done' || job.state === 'failed') return false;
    const phase = gang.phase;
    if (phase.kind === 'reforming') {
      phase.candidates = phase.candidates.filter((a) => a !== agentId);
      this.check(gang);
    } else {
      this.reform(gang, `${agentId} gone: ${reason}`, agentId);
    }
    return true;
  }

  /** Idle agents join running gangs below their size (below maxRanks when nothing else waits). */
  grow(queueEmpty: boolean): void {
    for (const gang of this.gangs.values()) {
      if (gang.phase.kind !== 'running') continue;
      const job = this.job(gang);
      const dp = job.spec.training.dataParallel;
      if (dp === undefined || job.state !== 'running') continue;
      if (job.step >= NO_GROWTH_AFTER * job.spec.training.steps) continue;
      const target = queueEmpty ? (dp.maxRanks ?? dp.ranks) : dp.ranks;
      const joining = job.joining ?? [];
      const backend = this.agents.get(gang.members[0]!)?.backend;
      for (const agent of this.agents.values()) {
        if (gang.members.length - gang.done.size + joining.length >= target) break;
        if (agent.state !== 'idle' || agent.jobId !== undefined || agent.suspect || agent.backend !== backend) continue;
        joining.push(agent.agentId);
        job.joining = joining;
        agent.state = 'busy';
        agent.jobId = gang.jobId;
        agent.assignedAt = this.ctx.clock.now();
        this.ctx.outbox.send(agent.peer, {
          type: 'assign',
          job: job.spec,
          attempt: job.attempt,
          epoch: job.epoch,
          gang: { generation: gang.generation },
        });
        this.ctx.log.info({ jobId: gang.jobId, agentId: agent.agentId }, `${agent.agentId} loads a replica to join`);
      }
    }
  }

  /** The job ended or was requeued: free every other seat (the members' sessions are cancelled). */
  release(jobId: JobId, reason: string): void {
    const gang = this.gangs.get(jobId);
    if (gang === undefined) return;
    this.gangs.delete(jobId);
    const job = this.ctx.scheduler.get(jobId);
    const seats = new Set([...gang.members, ...gang.joinersReady.keys(), ...(job?.joining ?? [])]);
    for (const agentId of seats) {
      if (gang.done.has(agentId)) continue;
      const agent = this.agents.get(agentId);
      if (agent === undefined || agent.jobId !== jobId) continue;
      this.ctx.outbox.send(agent.peer, { type: 'cancel', jobId, epoch: job?.epoch ?? 0, reason });
      freeAgent(agent);
    }
    if (job !== undefined) delete job.joining;
    if (this.gangs.size === 0) this.stopTimer();
  }

  tick(): void {
    const now = this.ctx.clock.now();
    for (const gang of [...this.gangs.values()]) {
      if (gang.phase.kind === 'forming' && now >= gang.phase.deadline)
        this.reform(gang, `generation ${gang.generation} did not form within ${FORM_TIMEOUT_MS} ms`);
      else if (gang.phase.kind === 'reforming') this.check(gang);
    }
  }

  close(): void {
    this.stopTimer();
  }

  // -------------------------------------------------------------------------------------------

  private job(gang: Gang): JobState {
    const job = this.ctx.scheduler.get(gang.jobId);
    if (job === undefined) throw new Error(`gang of unknown job ${gang.jobId}`);
    return job;
  }

  /** Seat `members` as the next generation: rank 0 first; the others once it has bound. */
  private form(gang: Gang, members: AgentId[], reason: string): void {
    const job = this.job(gang);
    gang.generation += 1;
    gang.members = members;
    gang.phase = { kind: 'forming', deadline: this.ctx.clock.now() + FORM_TIMEOUT_MS };
    job.gang = { generation: gang.generation, members: [...members] };
    job.agentId = members[0]!;
    if (job.joining !== undefined) {
      job.joining = job.joining.filter((a) => !members.includes(a));
      if (job.joining.length === 0) delete job.joining;
    }
    for (const id of members) gang.joinersReady.delete(id);
    this.ctx.outbox.record({
      type: 'gang_formed',
      jobId: gang.jobId,
      epoch: job.epoch,
      generation: gang.generation,
      members,
      reason,
      step: job.step,
    });
    const text = `${displayJobId(gang.jobId)} gang generation ${gang.generation}: ${members.length} ranks (${reason})`;
    this.ctx.log.info({ jobId: gang.jobId, generation: gang.generation, members, reason }, text);
    this.ctx.emit('gang', text, { jobId: gang.jobId });
    const root = this.agents.get(members[0]!);
    if (root === undefined) return;
    this.ctx.outbox.send(root.peer, {
      type: 'gang_start',
      jobId: gang.jobId,
      epoch: job.epoch,
      generation: gang.generation,
      rank: 0,
      ranks: members.length,
      metricsFrom: job.metricsStep ?? 0,
      collectiveTimeoutMs: COLLECTIVE_TIMEOUT_MS,
    });
  }

  private reform(gang: Gang, reason: string, without?: AgentId): void {
    if (this.ctx.lifecycle() !== 'running') return;
    const job = this.job(gang);
    if (job.step > gang.stepAtLastReform) gang.fruitless = 0;
    gang.stepAtLastReform = job.step;
    gang.fruitless += 1;
    const members = gang.members.filter((a) => a !== without && !gang.done.has(a) && this.agents.has(a));
    const candidates = [...members, ...gang.joinersReady.keys()];
    const ready = new Map(gang.joinersReady);
    const now = this.ctx.clock.now();
    // Long enough for a live member to finish its step and answer; the silent are found sooner (see check).
    const window = Math.max(2_000, 3 * this.ctx.experiment.cluster.heartbeatIntervalMs);
    gang.phase = { kind: 'reforming', reason, candidates, ready, deadline: now + window };
    this.ctx.log.warn(
      { jobId: gang.jobId, generation: gang.generation, reason },
      `gang of ${gang.jobId} reforms: ${reason}`,
    );
    for (const id of members) {
      const peer = this.agents.get(id)?.peer;
      if (peer !== undefined)
        this.ctx.outbox.send(peer, {
          type: 'gang_reform',
          jobId: gang.jobId,
          epoch: job.epoch,
          generation: gang.generation,
          reason,
        });
    }
    this.startTimer();
    this.check(gang);
  }

  /** Complete a reform once every candidate answered, or the rest are silent (no heartbeat lately) or out of time. */
  private check(gang: Gang): void {
    const phase = gang.phase;
    if (phase.kind !== 'reforming' || this.ctx.lifecycle() !== 'running') return;
    const now = this.ctx.clock.now();
    const silentAfter = 1.5 * this.ctx.experiment.cluster.heartbeatIntervalMs + 100;
    const awaited = phase.candidates.filter((id) => {
      if (phase.ready.has(id)) return false;
      const agent = this.agents.get(id);
      return agent !== undefined && now - agent.lastHeardAt < silentAfter;
    });
    if (awaited.length > 0 && now < phase.deadline) return;
    const next = phase.candidates.filter((id) => phase.ready.has(id));
    const job = this.job(gang);
    for (const id of phase.candidates) {
      if (next.includes(id)) continue;
      const agent = this.agents.get(id);
      if (agent !== undefined && agent.jobId === gang.jobId) {
        this.ctx.outbox.send(agent.peer, {
          type: 'cancel',
          jobId: gang.jobId,
          epoch: job.epoch,
          reason: `dropped from the gang: no answer to the reform (${phase.reason})`,
        });
        freeAgent(agent);
      }
    }
    const minRanks = job.spec.training.dataParallel?.minRanks ?? 1;
    if (next.length < minRanks || gang.fruitless > MAX_FRUITLESS_REFORMS) {
      const why =
        next.length < minRanks
          ? `${next.length} ranks left, minRanks is ${minRanks} (${phase.reason})`
          : `${gang.fruitless} reforms without progress (${phase.reason})`;
      this.ctx.store.dropUploads(gang.jobId);
      // The gang is over before the job goes back: nothing of it may act again (its timer included).
      this.release(gang.jobId, `gang fell apart: ${why}`);
      this.ctx.requeue(gang.jobId, `gang fell apart: ${why}`, true);
      this.ctx.schedule();
      return;
    }
    this.form(gang, next, phase.reason);
  }

  private startTimer(): void {
    if (this.timer !== undefined) return;
    this.timer = this.ctx.clock.setInterval(() => this.tick(), REFORM_CHECK_MS);
  }

  private stopTimer(): void {
    this.ctx.clock.clearInterval(this.timer);
    this.timer = undefined;
  }
}
