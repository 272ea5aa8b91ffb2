// Errors of the node agent, under protocol/errors.ts PeArenaError. Each says whether retrying can help;
// they cross the wire through protocol/errors.ts toWireError as {name, message, stack, retryable}.
import { PeArenaError } from '../protocol/errors.ts';

export class AgentError extends PeArenaError {
  override readonly name: string = 'AgentError';
}

/** A checkpoint blob that failed reassembly or verification (missing chunks, inconsistent headers, sha256). */
export class CheckpointTransferError extends AgentError {
  override readonly name = 'CheckpointTransferError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    // Another copy of the same checkpoint may arrive intact.
    super(message, { ...options, retryable: true });
  }
}

/** The training worker thread died or could not start (not a training error reported by the workload). */
export class WorkerCrashedError extends AgentError {
  override readonly name = 'WorkerCrashedError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: true });
  }
}

/** The workload module could not be loaded or does not export createWorkload. */
export class WorkloadModuleError extends AgentError {
  override readonly name = 'WorkloadModuleError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    // Another agent (another node, another install) may have a working module.
    super(message, { ...options, retryable: true });
  }
}

/** The coordinator sent an assignment this agent cannot take now (it is busy or draining). */
export class AgentBusyError extends AgentError {
  override readonly name = 'AgentBusyError';
  constructor(message: string) {
    super(message, { retryable: true });
  }
}

/** Bad agent options (e.g. a coordinator address that is not tcp://host:port). */
export class AgentConfigError extends AgentError {
  override readonly name = 'AgentConfigError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: false });
  }
}
