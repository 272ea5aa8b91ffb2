// What the agent actor is built from: its compiled settings (made once by run.ts compileAgentOptions, or by a
// test), the injected transport, clock, runner and logger, and the exit codes it leaves with.
import type { Logger } from 'pino';
import type { AgentId, DeviceInfo } from '../protocol/messages.ts';
import type { Clock } from '../protocol/clock.ts';
import type { ClientTransport } from '../protocol/transport.ts';
import type { BackendName } from '../src/train/workload.ts';
import { MAX_CHUNK_BYTES } from '../protocol/checkpoint-chunks.ts';
import type { GangPeerConfig } from './gang-link.ts';
import type { JobRunner } from './job-runner.ts';

/** Exit codes of runAgent (and of `pe-arena agent`). */
export const AGENT_EXIT = {
  ok: 0,
  fatal: 1,
  rejected: 2,
  coordinatorGone: 3,
} as const;
export type AgentExitCode = (typeof AGENT_EXIT)[keyof typeof AGENT_EXIT];

export interface AgentExit {
  code: AgentExitCode;
  reason: string;
}

export const AGENT_DEFAULTS = {
  deathTimeoutMs: 60_000,
  maxMetricBuffer: 100_000,
  metricsFlushMs: 250,
  metricsBatch: 50,
  helloRetryMs: 5_000,
  ackTimeoutMs: 30_000,
  fetchTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  sliceSteps: 10,
  /** Re-sends after the first try, for uploads refused by the coordinator and for resume downloads. */
  transferRetries: 3,
  chunkBytes: MAX_CHUNK_BYTES,
  closeGraceMs: 300,
} as const;

/** Everything the actor needs, compiled once by runAgent (or built by a test). */
export interface AgentConfig {
  agentId: AgentId;
  host: string;
  pid: number;
  backend: string;
  requestedBackend?: BackendName;
  devices: DeviceInfo[];
  launcherId?: string;
  workloadModule: string;
  deathTimeoutMs: number;
  maxMetricBuffer: number;
  metricsFlushMs: number;
  metricsBatch: number;
  helloRetryMs: number;
  ackTimeoutMs: number;
  fetchTimeoutMs: number;
  drainTimeoutMs: number;
  sliceSteps: number;
  transferRetries: number;
  chunkBytes: number;
  /** Real ms to wait after the last send before closing: the ZeroMQ socket closes with linger 0. */
  closeGraceMs: number;
  /** Where this agent's data-parallel ranks bind (absent: loopback, for runs on one machine). */
  gangPeers?: GangPeerConfig;
}

export interface AgentDeps {
  transport: ClientTransport;
  clock: Clock;
  runner: JobRunner;
  logger: Logger;
}
