// Placement: pending jobs onto idle agents (the scheduler decides which), journaled before the assign leaves, with
// the resume point of a moved job; and one word when jobs wait for needs that no agent here meets.
import type { AgentId, CoordinatorToAgent, JobId } from '../protocol/messages.ts';
import type { AgentRecord, CoordinatorContext } from './context.ts';
import { displayJobId } from './experiment.ts';
import type { JournalEntry } from './journal.ts';
import type { GangCoordinator } from './gangs.ts';
import type { PlaceableAgent } from './scheduler.ts';

export class JobPlacement {
  private warnedNeeds = false;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly agents: ReadonlyMap<AgentId, AgentRecord>,
    private readonly gangs: GangCoordinator,
  ) {}

  /** Place pending jobs on idle, unsuspected agents that match their needs. */
  schedule(): void {
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
    const placements = this.ctx.scheduler.placements(candidates);
    for (const { jobId, agentId, gang } of placements) {
      const agent = this.agents.get(agentId);
      if (!agent) continue;
      const members = gang?.map((id) => this.agents.get(id)).filter((a) => a !== undefined);
      this.assign(jobId, agent, members);
    }
    this.gangs.grow(this.ctx.scheduler.pending().length === 0);
    if (placements.length === 0 && candidates.some((a) => a.state === 'idle' && a.jobId === undefined))
      this.warnUnplaceable(candidates);
  }

  /**
   * Idle agents and pending jobs but nothing placed: the jobs' needs match no agent here. Say so once, rather
   * than wait in silence (e.g. a GPU experiment started on a laptop).
   */
  private warnUnplaceable(candidates: PlaceableAgent[]): void {
    if (this.warnedNeeds) return;
    const pending = this.ctx.scheduler
      .pending()
      .map((id) => this.ctx.scheduler.get(id))
      .filter((j) => j !== undefined);
    const first = pending[0];
    if (first?.spec.needs === undefined) return;
    this.warnedNeeds = true;
    const text = `${pending.length} pending jobs need ${JSON.stringify(first.spec.needs)}; no idle agent matches (agents: ${[...new Set(candidates.map((a) => a.backend))].join(', ')})`;
    this.ctx.log.warn({ needs: first.spec.needs }, text);
    this.ctx.emit('unplaceable', text);
  }

  /** A job onto its agent; a data-parallel one onto its gang (agent is rank 0, every member gets the assign). */
  private assign(jobId: JobId, agent: AgentRecord, gang?: AgentRecord[]): void {
    const before = this.ctx.scheduler.get(jobId);
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
    this.ctx.outbox.record(entry);
    const job = this.ctx.scheduler.assign(jobId, agent.agentId, this.ctx.clock.now());
    const seats = gang ?? [agent];
    for (const member of seats) {
      member.state = 'busy';
      member.jobId = jobId;
      member.assignedAt = this.ctx.clock.now();
      const assign: CoordinatorToAgent = { type: 'assign', job: job.spec, attempt: job.attempt, epoch: job.epoch };
      if (gang !== undefined) assign.gang = { generation: job.gang?.generation ?? 0 };
      // Rank 0 resumes from the checkpoint; the others take its state when the gang comes up.
      if (last && member === agent)
        assign.resumeFrom = {
          checkpointId: last.checkpointId,
          step: last.step,
          totalBytes: last.totalBytes,
          sha256: last.sha256,
        };
      this.ctx.outbox.send(member.peer, assign);
    }
    if (gang !== undefined)
      this.gangs.start(
        job,
        gang.map((a) => a.agentId),
      );
    const name = displayJobId(jobId);
    if (lost) {
      const text = `${name} lost on ${lost.agentId} at step ${lost.step}; resumed on ${agent.agentId} from step ${last?.step ?? 0}`;
      this.ctx.log.warn(
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
      this.ctx.emit('reassigned', text, { jobId, agentId: agent.agentId });
      delete job.lost;
    } else {
      this.ctx.log.info(
        { jobId, agentId: agent.agentId, attempt: job.attempt, epoch: job.epoch, resumeStep: last?.step },
        `assigned ${jobId} to ${agent.agentId}`,
      );
      this.ctx.emit('assigned', `${name} -> ${agent.agentId}${last ? ` (from step ${last.step})` : ''}`, {
        jobId,
        agentId: agent.agentId,
      });
    }
  }
}
