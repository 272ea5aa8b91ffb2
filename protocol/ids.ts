// Branded ids. nanoid's default alphabet is URL- and filename-safe, so ids can name directories and files.
import { customAlphabet, nanoid } from 'nanoid';
import type { AgentId, CheckpointId, JobId, RunId } from './messages.ts';

const shortId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 8);

export function newAgentId(): AgentId {
  return nanoid() as AgentId;
}

/** Sortable by start time (runs/<runId>/ lists in order), with a random tail so two runs never clash. */
export function newRunId(now: Date = new Date()): RunId {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${shortId()}` as RunId;
}

export function newCheckpointId(): CheckpointId {
  return nanoid() as CheckpointId;
}

export const asAgentId = (s: string): AgentId => s as AgentId;
export const asJobId = (s: string): JobId => s as JobId;
export const asRunId = (s: string): RunId => s as RunId;
export const asCheckpointId = (s: string): CheckpointId => s as CheckpointId;
