// A communicator's options, their defaults and the checks of what callers pass in.
import type { Clock } from './clock.ts';
import { CommunicatorError } from './errors.ts';
import { REDUCE_OPS, isReduceOp, type ReduceOp } from './reduce-ops.ts';
import type { PeerTransport } from './transport.ts';

export interface CommunicatorOptions {
  rank: number;
  size: number;
  /** Where rank 0 listens, e.g. 'tcp://head-node:5600' (rank 0 may use port 0 and publish `address`). */
  rootAddress: string;
  /** Where ranks other than 0 listen; the OS picks the port. Default 'tcp://127.0.0.1:0'. */
  bindAddress?: string;
  /**
   * What this communicator is for (e.g. a job and its gang generation): rank 0 refuses a hello from another session,
   * so a peer of an older generation or another job cannot join by mistake.
   */
  session?: string;
  /** Host name the others should use to reach this rank, when bound on a wildcard (0.0.0.0 or *). */
  advertiseHost?: string;
  /** Longest wait for any one expected message; then CommunicatorError. Default 30 s. */
  timeoutMs?: number;
  /** Longest wait for all ranks to join in create() (processes start at different times). Default max(timeoutMs, 30 s). */
  joinTimeoutMs?: number;
  /** Collective payloads are split into chunks of at most this many bytes, so transfer and reduction overlap. */
  chunkBytes?: number;
  /** Per-peer queue limit in messages. */
  highWaterMark?: number;
  maxFrameBytes?: number;
  /** How long close() waits for the peers to confirm that what this rank sent arrived. Default 1000 ms. */
  lingerMs?: number;
  log?: (line: string) => void;
  /**
   * CURVE with the cluster key pair (protocol/keys.ts): traffic is encrypted, and each rank admits only peers
   * holding the same pair, so an outsider cannot inject data or aborts.
   */
  curve?: { publicKey: string; secretKey: string };
  /** Called once this rank is bound, before it waits for the others (rank 0 publishes its address here). */
  onListening?: (address: string) => void;
  /** Binds this rank's endpoint at an address; default ZeroMQ with the options above (logic tests: memory). */
  bindTransport?: (address: string) => Promise<PeerTransport>;
  /** Time for every deadline; default the system clock. */
  clock?: Clock;
}

export const COMMUNICATOR_DEFAULTS = {
  timeoutMs: 30_000,
  chunkBytes: 1 << 20,
  highWaterMark: 10_000,
  lingerMs: 1000,
  bindAddress: 'tcp://127.0.0.1:0',
};

export function checkInt(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new CommunicatorError(`${what}: expected an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value as number;
}

export function checkOp(op: unknown, what: string): ReduceOp {
  if (!isReduceOp(op))
    throw new CommunicatorError(`${what}: unknown op ${String(op)}; known: ${REDUCE_OPS.join(', ')}`);
  return op;
}
