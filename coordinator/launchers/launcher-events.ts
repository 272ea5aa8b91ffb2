// The batch launchers' event log: each event goes to the log line, to runs/<runId>/launch/events.jsonl, and to the
// listeners (the coordinator journals them and the view shows them).
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../protocol/clock.ts';

export const LAUNCHER_EVENT = {
  submitted: 'submitted',
  submitFailed: 'submit_failed',
  queued: 'queued',
  running: 'running',
  ended: 'ended',
  replacement: 'replacement',
  continuation: 'continuation',
  cancelled: 'cancelled',
  pollFailed: 'poll_failed',
  dryRun: 'dry_run',
  adopted: 'adopted',
} as const;
export type LauncherEventKind = (typeof LAUNCHER_EVENT)[keyof typeof LAUNCHER_EVENT];

/** Launcher events for the journal and the view (also appended to runs/<runId>/launch/events.jsonl). */
export interface LauncherEvent {
  at: string;
  kind: LauncherEventKind;
  text: string;
  launcherId?: string;
  submissionId?: string;
  state?: string;
  exitCode?: number | null;
  host?: string;
}

/** What the coordinator journals of a launcher event: the event without its timestamp (the journal stamps it). */
export type LauncherNote = Omit<LauncherEvent, 'at' | 'kind'> & { kind: string };

export class LauncherEventLog {
  /** launch/ of the run; events.jsonl is written there once it is set. */
  launchDir = '';
  private readonly listeners: ((event: LauncherEvent) => void)[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly log: (line: string) => void,
  ) {}

  onEvent(listener: (event: LauncherEvent) => void): void {
    this.listeners.push(listener);
  }

  emit(event: Omit<LauncherEvent, 'at'>): void {
    const full: LauncherEvent = { at: new Date(this.clock.now()).toISOString(), ...event };
    this.log(full.text);
    if (this.launchDir !== '') {
      try {
        appendFileSync(join(this.launchDir, 'events.jsonl'), JSON.stringify(full) + '\n');
      } catch {
        // The run directory went away; the listeners still hear it.
      }
    }
    for (const listener of this.listeners) {
      try {
        listener(full);
      } catch (error) {
        this.log(`event listener failed: ${(error as Error).message}`);
      }
    }
  }
}
