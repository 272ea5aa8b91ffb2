// The live status of a run (`pe-arena status tcp://...`, the progress view): every job and every agent as the
// coordinator sees them now.
import type { AgentStatus, JobStatus, RunId, SchedulerTaskStatus, StatusReply } from '../protocol/messages.ts';
import type { AgentRecord } from './context.ts';
import type { JobState } from './scheduler.ts';

export interface SnapshotSource {
  runId: RunId;
  experiment: string;
  jobs: Iterable<JobState>;
  agents: Iterable<AgentRecord>;
  schedulerTasks: SchedulerTaskStatus[];
  now: number;
}

export function statusSnapshot(source: SnapshotSource): StatusReply {
  const jobs = [...source.jobs].map(jobStatus);
  const agents = [...source.agents].map((a) => agentStatus(a, source.now));
  return {
    type: 'status',
    runId: source.runId,
    experiment: source.experiment,
    jobs,
    agents,
    ...(source.schedulerTasks.length > 0 ? { schedulerTasks: source.schedulerTasks } : {}),
  };
}

function jobStatus(j: JobState): JobStatus {
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
  if (j.gang !== undefined) s.gang = { generation: j.gang.generation, members: [...j.gang.members] };
  return s;
}

function agentStatus(a: AgentRecord, now: number): AgentStatus {
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
}
