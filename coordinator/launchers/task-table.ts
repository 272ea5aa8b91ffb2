// What the batch launcher knows of its submissions and their tasks, reconciled with each poll: a task's state moves
// only forward (queued -> running -> ended), and each change is handed back for the launcher to act on.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SubmissionKind } from './job-script.ts';
import type { TaskState, TaskStatus } from './scheduler-dialect.ts';

export interface Submission {
  id: string;
  number: number;
  kind: SubmissionKind;
  count: number;
  scriptPath: string;
  cancelled: boolean;
}

export interface Task {
  id: string;
  submissionId: string | undefined;
  kind: SubmissionKind;
  state: TaskState;
  rawState: string;
  startedAt: number | undefined;
  endsAt: number | undefined;
  host: string | undefined;
  /** A continuation was submitted for it (or it needs none). */
  continued: boolean;
  reported: boolean;
}

/** One change a poll made, in the order it happened: first seen queued, started running, ended. */
export type TaskChange =
  | { kind: 'queued'; task: Task; status: TaskStatus }
  | { kind: 'running'; task: Task; status: TaskStatus }
  | { kind: 'ended'; task: Task; status: TaskStatus };

/** Each task as the last poll saw it (scheduler id, state, host), for `pe-arena status`, the view and tasks.json. */
export interface TaskSnapshot {
  launcherId: string;
  kind: SubmissionKind;
  state: TaskState;
  schedulerState: string;
  host?: string;
  endsAt?: number;
}

export class TaskTable {
  readonly submissions = new Map<string, Submission>();
  readonly tasks = new Map<string, Task>();

  addSubmission(submission: Submission): void {
    this.submissions.set(submission.id, submission);
  }

  /** Drops a submission and every task of it (nothing of it is left to poll, replace or cancel). */
  dropSubmission(id: string): void {
    this.submissions.delete(id);
    for (const t of this.tasksOf(id)) this.tasks.delete(t.id);
  }

  tasksOf(submissionId: string): Task[] {
    return [...this.tasks.values()].filter((t) => t.submissionId === submissionId);
  }

  snapshot(): TaskSnapshot[] {
    return [...this.tasks.values()].map((t) => ({
      launcherId: t.id,
      kind: t.kind,
      state: t.state,
      schedulerState: t.rawState,
      ...(t.host === undefined ? {} : { host: t.host }),
      ...(t.endsAt === undefined ? {} : { endsAt: t.endsAt }),
    }));
  }

  /** Tasks queued or on a node, by what the last poll said (plus submitted ones not seen yet). */
  alive(): number {
    let n = 0;
    const seenPer = new Map<string, number>();
    for (const t of this.tasks.values()) {
      if (t.submissionId !== undefined) seenPer.set(t.submissionId, (seenPer.get(t.submissionId) ?? 0) + 1);
      if (t.state !== 'ended') n++;
    }
    const anyUnattributed = [...this.tasks.values()].some((t) => t.submissionId === undefined);
    if (!anyUnattributed)
      for (const s of this.submissions.values()) if (!s.cancelled) n += Math.max(0, s.count - (seenPer.get(s.id) ?? 0));
    return n;
  }

  /** Agents that will still be there after the ones already continued leave. */
  activeNotContinued(): number {
    let continuedAlive = 0;
    for (const t of this.tasks.values()) if (t.state !== 'ended' && t.continued) continuedAlive++;
    return this.alive() - continuedAlive;
  }

  /** Replacement and continuation submissions whose every task is still queued, newest first. */
  queuedExtras(): Submission[] {
    return [...this.submissions.values()]
      .filter((s) => !s.cancelled && s.kind !== 'initial')
      .filter((s) => {
        const tasks = this.tasksOf(s.id);
        return tasks.length > 0 && tasks.every((t) => t.state === 'queued');
      })
      .sort((a, b) => b.number - a.number);
  }

  /**
   * Applies one polled status. `adopting`: during the take-over poll at start, a task that ended under the earlier
   * coordinator is recorded as ended and reported already (neither reported again nor replaced).
   */
  apply(status: TaskStatus, now: number, adopting: boolean): TaskChange[] {
    const changes: TaskChange[] = [];
    let task = this.tasks.get(status.id);
    if (task === undefined) {
      const submissionId = status.submissionId ?? (this.submissions.has(status.id) ? status.id : undefined);
      const sub = submissionId === undefined ? undefined : this.submissions.get(submissionId);
      task = {
        id: status.id,
        submissionId,
        kind: sub?.kind ?? 'initial',
        state: 'queued',
        rawState: '',
        startedAt: undefined,
        endsAt: undefined,
        host: undefined,
        continued: false,
        reported: false,
      };
      this.tasks.set(status.id, task);
      if (status.state === 'queued') changes.push({ kind: 'queued', task, status });
    }
    const before = task.state;
    if (before === 'ended') return changes;
    if (adopting && before === 'queued' && status.state === 'ended') {
      task.state = 'ended';
      task.rawState = status.rawState;
      task.reported = true;
      return changes;
    }
    task.state = status.state;
    task.rawState = status.rawState;
    if (status.host !== undefined) task.host = status.host;
    if (status.state === 'running' || status.state === 'ending') {
      task.startedAt = status.startedAt ?? task.startedAt ?? now;
      if (status.endsAt !== undefined) task.endsAt = status.endsAt;
    }
    if (before !== 'running' && status.state === 'running') changes.push({ kind: 'running', task, status });
    if (status.state === 'ended') changes.push({ kind: 'ended', task, status });
    return changes;
  }

  /** When a running task with no continuation yet reaches its walltime; undefined for every other task. */
  walltimeEnd(task: Task, walltimeMs: number): number | undefined {
    if (task.state !== 'running' || task.continued || task.startedAt === undefined) return undefined;
    return task.endsAt ?? task.startedAt + walltimeMs;
  }

  /** The soonest time a continuation falls due (leadMs before a walltime end), or undefined when none will. */
  nextContinuationAt(walltimeMs: number, leadMs: number): number | undefined {
    let at: number | undefined;
    for (const task of this.tasks.values()) {
      const endsAt = this.walltimeEnd(task, walltimeMs);
      if (endsAt !== undefined) at = Math.min(at ?? Infinity, endsAt - leadMs);
    }
    return at;
  }

  /** A task seen before that the scheduler no longer lists is gone (ended and purged, or deleted). */
  goneStatuses(seen: Set<string>): TaskStatus[] {
    return [...this.tasks.values()]
      .filter((task) => task.state !== 'ended' && !seen.has(task.id))
      .map((task) => ({ id: task.id, state: 'ended', rawState: 'GONE', exitCode: null, signal: null }));
  }
}

/** launch/tasks.json: each task's scheduler state as of the poll at `at`, written whole, then renamed. */
export function writeTasksFile(launchDir: string, jobName: string, at: number, tasks: TaskSnapshot[]): void {
  const file = join(launchDir, 'tasks.json');
  writeFileSync(`${file}.tmp`, JSON.stringify({ at: new Date(at).toISOString(), jobName, tasks }, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
}
