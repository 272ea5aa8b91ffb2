// The run's journal: every state change appended to runs/<runId>/journal.jsonl and fsync'd before the
// coordinator's messages that act on it leave, so a coordinator killed at any instant can rebuild with replay().
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { AgentId, CheckpointId, JobId, RunId, WireError } from '../protocol/messages.ts';
import { RunDirectoryError } from './errors.ts';
import type { LauncherNote } from './launchers/launcher-events.ts';

export interface CheckpointRef {
  checkpointId: CheckpointId;
  step: number;
  totalBytes: number;
  sha256: string;
  /** Path relative to the run directory. */
  file: string;
}

export type JournalEntry =
  | { type: 'run_started'; runId: RunId; experiment: string; jobs: JobId[]; address: string }
  | { type: 'coordinator_started'; address: string; pid: number }
  | { type: 'agent_joined'; agentId: AgentId; host: string; pid: number; backend: string; launcherId?: string }
  | { type: 'agent_lost'; agentId: AgentId; reason: string }
  | { type: 'agent_left'; agentId: AgentId; reason: string }
  | { type: 'job_assigned'; jobId: JobId; agentId: AgentId; attempt: number; epoch: number; resumeStep?: number }
  /** attemptCounted false: not the job's fault (a drain, a restart); replay gives the attempt back, as the scheduler did. */
  | { type: 'job_requeued'; jobId: JobId; reason: string; epoch: number; step: number; attemptCounted?: false }
  | { type: 'checkpoint_acked'; jobId: JobId; epoch: number; kind: 'checkpoint' | 'final'; checkpoint: CheckpointRef }
  | { type: 'job_evaluating'; jobId: JobId; epoch: number }
  /** A data-parallel job's gang generation: its members in rank order, and the job's step when it formed. */
  | {
      type: 'gang_formed';
      jobId: JobId;
      epoch: number;
      generation: number;
      members: AgentId[];
      reason: string;
      step: number;
    }
  | { type: 'job_done'; jobId: JobId; epoch: number }
  /** Done before this run started: an earlier run (`--reuse`) finished the same job, and its results were copied. */
  | { type: 'job_reused'; jobId: JobId; fromRun: string }
  | { type: 'job_failed'; jobId: JobId; epoch: number; error: WireError }
  | { type: 'run_finished'; done: number; failed: number }
  /** A stop asked for (a signal): the jobs running then, at the step each had reached; their drain checkpoints follow. */
  | { type: 'run_stopped'; reason: string; running: { jobId: JobId; agentId: AgentId; step: number }[] }
  | { type: 'coordinator_stopped'; reason: string }
  /** pbs/slurm launcher news: submitted, queued, running, ended (with the exit code), replacement, cancelled, ... */
  | ({ type: 'launcher_event' } & LauncherNote);

export type StampedEntry = JournalEntry & { t: number };

export class Journal {
  private fd: number | undefined;

  constructor(
    readonly file: string,
    private readonly now: () => number = Date.now,
  ) {
    this.fd = openSync(file, 'a');
  }

  private dirty = false;

  /**
   * Appends (written at once, in order). It is durable after the next sync(): the coordinator syncs once per
   * burst of changes (group commit) and holds back the messages that act on them until then.
   */
  append(entry: JournalEntry): void {
    if (this.fd === undefined) throw new RunDirectoryError(`journal ${this.file} is closed`);
    const line = JSON.stringify({ t: this.now(), ...entry }) + '\n';
    writeSync(this.fd, line);
    this.dirty = true;
  }

  /** True when entries were appended since the last sync. */
  get pending(): boolean {
    return this.dirty;
  }

  /** fsync what was appended so far. */
  sync(): void {
    if (this.fd === undefined || !this.dirty) return;
    fsyncSync(this.fd);
    this.dirty = false;
  }

  close(): void {
    this.sync();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Read a journal back. A torn last line (the coordinator was killed mid-write) is skipped; a bad line in the
 * middle is an error naming the line, since the rest could not be trusted.
 */
export function readJournal(file: string): StampedEntry[] {
  if (!existsSync(file)) throw new RunDirectoryError(`${file} does not exist: not a run directory`);
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: StampedEntry[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const entry = JSON.parse(line) as unknown;
      if (typeof entry !== 'object' || entry === null || typeof (entry as { type?: unknown }).type !== 'string') {
        throw new Error('not a journal entry');
      }
      out.push(entry as StampedEntry);
    } catch (error) {
      const isLast = lines.slice(i + 1).every((l) => l.trim() === '');
      if (!isLast) throw new RunDirectoryError(`${file}:${i + 1}: unreadable journal line`, { cause: error });
    }
  });
  return out;
}

export interface ReplayedJob {
  state: 'pending' | 'assigned' | 'running' | 'evaluating' | 'done' | 'failed';
  attempt: number;
  epoch: number;
  step: number;
  agentId?: AgentId;
  /** A data-parallel job's last generation (members in rank order), while it runs. */
  gang?: { generation: number; members: AgentId[] };
  checkpoints: CheckpointRef[];
  final?: CheckpointRef;
  error?: WireError;
}

export interface ReplayedRun {
  runId: RunId;
  experiment: string;
  address: string;
  jobs: Map<JobId, ReplayedJob>;
  finished: boolean;
  agents: Map<AgentId, { host: string; pid: number; backend: string; gone: boolean }>;
}

/** Fold the journal into the state a coordinator needs to carry on. */
export function replay(entries: StampedEntry[]): ReplayedRun {
  const first = entries.find((e) => e.type === 'run_started');
  if (first === undefined || first.type !== 'run_started')
    throw new RunDirectoryError('journal has no run_started entry');
  const run: ReplayedRun = {
    runId: first.runId,
    experiment: first.experiment,
    address: first.address,
    jobs: new Map(),
    finished: false,
    agents: new Map(),
  };
  for (const id of first.jobs) run.jobs.set(id, { state: 'pending', attempt: 0, epoch: 0, step: 0, checkpoints: [] });
  for (const e of entries) {
    const job = 'jobId' in e ? run.jobs.get(e.jobId) : undefined;
    switch (e.type) {
      case 'coordinator_started':
        run.address = e.address;
        break;
      case 'agent_joined':
        run.agents.set(e.agentId, { host: e.host, pid: e.pid, backend: e.backend, gone: false });
        break;
      case 'agent_lost':
      case 'agent_left': {
        const a = run.agents.get(e.agentId);
        if (a) a.gone = true;
        break;
      }
      case 'job_assigned':
        if (!job) break;
        job.state = 'running';
        job.attempt = e.attempt;
        job.epoch = e.epoch;
        job.agentId = e.agentId;
        job.step = e.resumeStep ?? 0;
        delete job.gang;
        break;
      case 'gang_formed':
        if (!job) break;
        job.gang = { generation: e.generation, members: e.members };
        if (e.members[0] !== undefined) job.agentId = e.members[0];
        job.step = Math.max(job.step, e.step);
        break;
      case 'job_requeued':
        if (!job) break;
        job.state = 'pending';
        if (e.attemptCounted === false) job.attempt = Math.max(0, job.attempt - 1);
        delete job.agentId;
        delete job.gang;
        break;
      case 'checkpoint_acked':
        if (!job) break;
        if (e.kind === 'final') job.final = e.checkpoint;
        else {
          job.checkpoints.push(e.checkpoint);
          job.step = Math.max(job.step, e.checkpoint.step);
        }
        break;
      case 'job_evaluating':
        if (job) job.state = 'evaluating';
        break;
      case 'job_done':
      case 'job_reused':
        if (job) job.state = 'done';
        break;
      case 'job_failed':
        if (!job) break;
        job.state = 'failed';
        job.error = e.error;
        break;
      case 'run_finished':
        run.finished = true;
        break;
      default:
        break;
    }
  }
  return run;
}
