// Failure detection from silence and from stalled progress. Any message from an agent counts as a sign of life;
// silence past suspectAfterMs makes it suspect (shown, nothing moved), past failureTimeoutMs dead. The progress
// watchdog catches agents that still heartbeat but whose job's step has stopped advancing.
// The third signal, the launcher's word that a process is gone, goes straight to the coordinator.
import type { AgentId, JobId } from '../protocol/messages.ts';

export interface DetectorSettings {
  suspectAfterMs: number;
  failureTimeoutMs: number;
  /** 0 turns the watchdog off. */
  watchdogMs: number;
}

export interface WatchedAgent {
  agentId: AgentId;
  lastHeardAt: number;
  suspect: boolean;
  jobId?: JobId;
}

export interface WatchedJob {
  state: string;
  step: number;
  totalSteps: number;
  lastProgressAt: number;
}

export type Verdict =
  | { agentId: AgentId; verdict: 'suspect'; silentMs: number }
  | { agentId: AgentId; verdict: 'alive' }
  | { agentId: AgentId; verdict: 'dead'; reason: string };

export class FailureDetector {
  constructor(private readonly settings: DetectorSettings) {}

  /** Verdicts that change something: newly suspect, suspect again heard from, dead. */
  check(now: number, agents: Iterable<WatchedAgent>, jobOf: (jobId: JobId) => WatchedJob | undefined): Verdict[] {
    const out: Verdict[] = [];
    for (const a of agents) {
      const silent = now - a.lastHeardAt;
      if (silent > this.settings.failureTimeoutMs) {
        out.push({ agentId: a.agentId, verdict: 'dead', reason: `no heartbeat for ${(silent / 1000).toFixed(1)} s` });
        continue;
      }
      if (this.settings.watchdogMs > 0 && a.jobId !== undefined) {
        const job = jobOf(a.jobId);
        // A job in evaluation (or past its last step) legitimately stops stepping.
        if (job && (job.state === 'assigned' || job.state === 'running') && job.step < job.totalSteps) {
          const stalled = now - job.lastProgressAt;
          if (stalled > this.settings.watchdogMs) {
            out.push({
              agentId: a.agentId,
              verdict: 'dead',
              reason: `no progress past step ${job.step} for ${(stalled / 1000).toFixed(1)} s`,
            });
            continue;
          }
        }
      }
      if (silent > this.settings.suspectAfterMs) {
        if (!a.suspect) out.push({ agentId: a.agentId, verdict: 'suspect', silentMs: silent });
      } else if (a.suspect) {
        out.push({ agentId: a.agentId, verdict: 'alive' });
      }
    }
    return out;
  }
}
