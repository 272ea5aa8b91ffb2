// A launcher starts agents somewhere (local child processes, PBS, Slurm, or nobody) and tells the coordinator
// when one of its processes is gone: the third failure signal, faster than waiting for heartbeats to stop.
import type { SchedulerTaskStatus } from '../../protocol/messages.ts';

export interface AgentExit {
  /** The process id on its host (matches hello.pid for local agents). */
  pid: number;
  /** The scheduler's id (PBS/Slurm), when there is one (matches hello.launcherId). */
  launcherId?: string;
  code: number | null;
  signal: string | null;
}

export interface LaunchRequest {
  /** The address agents connect to, e.g. tcp://127.0.0.1:5555. */
  coordinator: string;
  count: number;
  runDir: string;
  /** Extra arguments for `pe-arena agent` (e.g. --backend wasm). */
  agentArgs: string[];
  /**
   * Batch launchers: scheduler submissions an earlier coordinator of this run made (from its journal). Their tasks
   * that are still queued or running are taken over (polled, replaced, cancelled at the end) and count towards
   * `count`; only the rest is submitted anew.
   */
  adopt?: string[];
}

export interface Launcher {
  readonly name: string;
  start(request: LaunchRequest): Promise<void>;
  onExit(listener: (exit: AgentExit) => void): void;
  /** Processes still running (undefined when the launcher cannot know). */
  alive(): number | undefined;
  /** Signal every process it started (drain: agents checkpoint on SIGTERM); returns their pids. Optional. */
  signalAll?(signal: NodeJS.Signals): number[];
  /** Batch launchers (pbs, slurm): each scheduler task and its state as last polled, for live status. */
  schedulerTasks?(): SchedulerTaskStatus[];
  /** Batch launchers: an agent is lost or left; poll the scheduler now, at the base pace, to replace it soon. */
  pollSoon?(): void;
  /** Ask agents to stop (SIGTERM), wait up to graceMs, then kill what is left. */
  stop(graceMs: number): Promise<void>;
}
