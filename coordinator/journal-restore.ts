// Restart from the journal: done jobs stay done, failed ones failed, and the rest go back to the queue, resuming
// from their last checkpoint whose file survived.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { JournalEntry, ReplayedRun } from './journal.ts';
import type { JobState, Scheduler } from './scheduler.ts';

export interface RestoreTarget {
  runDir: string;
  scheduler: Scheduler;
  keepCheckpoints: number;
  now: number;
  /** Journals the re-queue of each job a restart interrupted. */
  record(entry: JournalEntry): void;
}

export function restoreFromJournal(run: ReplayedRun, target: RestoreTarget): void {
  const { scheduler } = target;
  for (const [jobId, r] of run.jobs) {
    const job = scheduler.get(jobId);
    if (!job) continue;
    // Only checkpoints whose files survived count.
    const checkpoints = r.checkpoints
      .filter((c) => existsSync(join(target.runDir, c.file)))
      .slice(-target.keepCheckpoints);
    const patch: Partial<JobState> = {
      attempt: r.attempt,
      epoch: r.epoch,
      checkpoints,
      step: checkpoints.at(-1)?.step ?? 0,
      lastProgressAt: target.now,
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
    scheduler.restore(jobId, patch);
    if (r.state === 'running' || r.state === 'assigned' || r.state === 'evaluating') {
      target.record({
        type: 'job_requeued',
        jobId,
        reason: 'coordinator restarted',
        epoch: r.epoch,
        step: patch.step ?? 0,
      });
    }
  }
}
