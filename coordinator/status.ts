// `pe-arena status <run-dir | tcp://host:port>`: from the journal of a run directory, or live from a running
// coordinator with status_request (no hello needed).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import type { AgentId, JobStatus, RunId, SchedulerTaskStatus, StatusReply } from '../protocol/messages.ts';
import { systemClock, type Clock } from '../protocol/clock.ts';
import { withDeadline } from '../protocol/deadline.ts';
import { connectClient, type ClientCurve } from '../protocol/zmq-transport.ts';
import { CoordinatorError, RunDirectoryError } from './errors.ts';
import { displayJobId } from './experiment.ts';
import type { Experiment } from './experiment.ts';
import { readJournal, replay } from './journal.ts';

export function statusFromRunDir(runDir: string): StatusReply {
  const expFile = join(runDir, 'experiment.json');
  if (!existsSync(expFile)) throw new RunDirectoryError(`${runDir} is not a run directory: experiment.json is missing`);
  const experiment = JSON.parse(readFileSync(expFile, 'utf8')) as Experiment;
  const entries = readJournal(join(runDir, 'journal.jsonl'));
  const run = replay(entries);
  const last = entries.at(-1)?.t ?? Date.now();
  const jobs: JobStatus[] = experiment.jobs.map((spec) => {
    const r = run.jobs.get(spec.jobId);
    const s: JobStatus = {
      jobId: spec.jobId,
      encoding: spec.encoding,
      task: spec.task.name,
      seed: spec.seed,
      state: r?.state ?? 'pending',
      attempt: r?.attempt ?? 0,
      epoch: r?.epoch ?? 0,
      step: r?.state === 'done' ? spec.training.steps : (r?.step ?? 0),
      totalSteps: spec.training.steps,
    };
    if (r?.agentId !== undefined && r.state !== 'done' && r.state !== 'failed' && r.state !== 'pending') {
      s.agentId = r.agentId;
      if (r.gang !== undefined) s.gang = r.gang;
    }
    return s;
  });
  const agents = [...run.agents].map(([agentId, a]) => ({
    agentId: agentId as AgentId,
    host: a.host,
    pid: a.pid,
    backend: a.backend,
    state: a.gone ? ('gone' as const) : ('idle' as const),
    lastHeartbeatAgoMs: Date.now() - last,
  }));
  return { type: 'status', runId: run.runId as RunId, experiment: run.experiment, jobs, agents };
}

/** A scheduler task as the pbs/slurm launcher last polled it (the live status, or runs/<runId>/launch/tasks.json). */
export type SchedulerTask = SchedulerTaskStatus;

/** The run's scheduler tasks, or [] for a run without a batch launcher; a damaged file is reported, not fatal. */
export function schedulerTasksFromRunDir(runDir: string, warn: (line: string) => void = () => {}): SchedulerTask[] {
  const file = join(runDir, 'launch', 'tasks.json');
  if (!existsSync(file)) return [];
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { tasks?: unknown };
    const tasks = Array.isArray(raw.tasks) ? raw.tasks : [];
    return tasks.filter((t): t is SchedulerTask => {
      const r = t as Record<string, unknown> | null;
      return typeof r === 'object' && r !== null && typeof r.launcherId === 'string' && typeof r.state === 'string';
    });
  } catch (error) {
    warn(`${file}: unreadable (${(error as Error).message}); scheduler states not shown`);
    return [];
  }
}

export async function statusFromCoordinator(
  address: string,
  options: { timeoutMs?: number; curve?: ClientCurve; clock?: Clock } = {},
): Promise<StatusReply> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const client = await connectClient({ address, ...(options.curve === undefined ? {} : { curve: options.curve }) });
  try {
    // The send is inside the deadline too: toward a coordinator whose CURVE handshake we fail, ZeroMQ may have no
    // connection to queue the request on, and the send then waits for one until its own (longer) timeout.
    const reply = (async (): Promise<StatusReply> => {
      await client.send({ type: 'status_request', version: PROTOCOL_VERSION });
      for await (const inbound of client.inbound()) {
        if (inbound.kind === 'message' && inbound.message.type === 'status') return inbound.message;
        if (inbound.kind === 'message' && inbound.message.type === 'reject')
          throw new CoordinatorError(`coordinator refused: ${inbound.message.reason}`);
      }
      throw new CoordinatorError(`no status from ${address}`);
    })();
    const noAnswer = (): CoordinatorError =>
      new CoordinatorError(
        `no answer from ${address} within ${timeoutMs} ms` +
          (options.curve === undefined ? ' (a coordinator with CURVE on answers only with --keys-dir)' : ''),
        { retryable: true },
      );
    return await withDeadline(reply, timeoutMs, noAnswer, options.clock ?? systemClock);
  } finally {
    await client.close();
  }
}

export function formatStatus(s: StatusReply, tasks: readonly SchedulerTask[] = []): string {
  const counts = new Map<string, number>();
  for (const j of s.jobs) counts.set(j.state, (counts.get(j.state) ?? 0) + 1);
  const lines = [`run ${s.runId} (${s.experiment}): ${[...counts].map(([k, v]) => `${v} ${k}`).join(', ')}`, ''];
  const rows = s.jobs.map((j) => [
    displayJobId(j.jobId),
    j.state,
    `${j.step}/${j.totalSteps}`,
    `attempt ${j.attempt}`,
    j.gang === undefined ? (j.agentId ?? '-') : `gang gen ${j.gang.generation}: ${j.gang.members.join(', ')}`,
    j.loss === undefined ? '' : `loss ${j.loss.toFixed(3)}`,
  ]);
  lines.push(...table(['job', 'state', 'step', 'attempt', 'agent', ''], rows));
  if (s.agents.length > 0) {
    lines.push('');
    lines.push(
      ...table(
        ['agent', 'host', 'pid', 'backend', 'state', 'heard'],
        s.agents.map((a) => [
          a.agentId,
          a.host,
          String(a.pid),
          a.backend,
          a.state,
          `${(a.lastHeartbeatAgoMs / 1000).toFixed(1)}s ago`,
        ]),
      ),
    );
  }
  if (tasks.length > 0) {
    lines.push('');
    lines.push(
      ...table(
        ['scheduler task', 'kind', 'state', 'scheduler state', 'host'],
        tasks.map((t) => [t.launcherId, t.kind, t.state, t.schedulerState, t.host ?? '-']),
      ),
    );
  }
  return lines.join('\n');
}

function table(head: string[], rows: string[][]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const f = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(w[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [f(head), ...rows.map(f)];
}
