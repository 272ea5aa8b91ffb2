// An agent's seat in a data-parallel gang (one per gang job session). The agent thread owns ZeroMQ: this link holds
// the communicator of the current generation, sums the worker's flat gradient buffers over it (the buffers cross the
// thread boundary transferred, not copied), and brings each new generation in step before training resumes: the
// ranks exchange their applied steps, and the one furthest on broadcasts its whole state to those behind.
// When a collective fails (a peer died: the wait times out after a few measured step times, or a peer's abort
// arrives) or the coordinator reforms the gang, the link aborts the generation, the worker undoes its step and
// pauses, and the link tells the coordinator where it stands (gang_ready). Rank 0 streams the job's metrics; every
// rank keeps the recent ones (a rank brought in step gets the furthest rank's with its state), so a new rank 0 sends
// what the coordinator has not seen, with no gap and no repeat.
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Communicator } from '../protocol/communicator.ts';
import type { AgentToCoordinator, GangReform, GangStart, JobId, MetricPoint } from '../protocol/messages.ts';
import type { FromWorker, ToWorker } from './worker-protocol.ts';

/** Metric points each rank keeps for a successor rank 0 (a point is a few numbers). */
const RECENT_POINTS = 20_000;
/** Steps measured before the collective timeout follows the step time. */
const MEASURED_STEPS = 3;
/** The collective timeout as a multiple of the measured step time, and its floor. */
const TIMEOUT_STEPS = 6;
const MIN_TIMEOUT_MS = 1_000;
/** Longest wait for every rank to join a new generation's communicator. */
const JOIN_TIMEOUT_MS = 30_000;

export interface GangPeerConfig {
  /** Where a rank binds, e.g. tcp://127.0.0.1:0 (local runs) or tcp://0.0.0.0:0 (clusters, advertised by host name). */
  bind: string;
  advertiseHost?: string;
  /** The cluster key pair: peers admit only ranks holding it. */
  curve?: { publicKey: string; secretKey: string };
}

export interface GangHost {
  jobId: JobId;
  epoch: number;
  log: Logger;
  peers: GangPeerConfig;
  send(message: AgentToCoordinator): void;
  toWorker(message: ToWorker, transfer?: ArrayBuffer[]): void;
  /** Stream points to the coordinator (rank 0 only). */
  stream(points: readonly MetricPoint[]): void;
  flushMetrics(): void;
}

/** What the rank furthest on broadcasts to the ones behind: its whole state, and its metric points past theirs. */
interface SyncState {
  state: Uint8Array;
  points: MetricPoint[];
}

function isSyncState(value: unknown): value is SyncState {
  const v = value as Partial<SyncState> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    v.state instanceof Uint8Array &&
    Array.isArray(v.points) &&
    v.points.every((p) => typeof (p as Partial<MetricPoint> | null)?.step === 'number')
  );
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

type WorkerState = { kind: 'loading' } | { kind: 'paused'; step: number } | { kind: 'training' } | { kind: 'done' };

/** The peer address to bind for a coordinator address: loopback stays loopback, anything else binds every interface. */
export function gangPeerConfig(coordinator: string, curve?: { publicKey: string; secretKey: string }): GangPeerConfig {
  const local = /^tcp:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:|$)/.test(coordinator);
  return {
    bind: local ? 'tcp://127.0.0.1:0' : 'tcp://0.0.0.0:0',
    ...(local ? {} : { advertiseHost: hostname() }),
    ...(curve === undefined ? {} : { curve }),
  };
}

export class GangLink {
  /** The generation this rank was last seated in (0: never). */
  private generation = 0;
  private rankNow = -1;
  private ranks = 0;
  private comm: Communicator | undefined;
  /** Set while seated in a live generation (the communicator is up, or coming up). */
  private seated = false;
  private leftReason = 'loaded';
  private worker: WorkerState = { kind: 'loading' };
  private pausedWaiters: ((step: number) => void)[] = [];
  private stateWaiter: ((data: Uint8Array) => void) | undefined;
  private readonly recent: MetricPoint[] = [];
  private streaming = false;
  private lastReduceAt: number | undefined;
  private stepMs: number[] = [];
  private closed = false;

  constructor(private readonly host: GangHost) {}

  get rank(): number {
    return this.rankNow;
  }

  /** Metric points from the worker: kept for a successor, and streamed when this is rank 0. */
  onMetrics(points: readonly MetricPoint[]): void {
    for (const p of points) this.recent.push(p);
    if (this.recent.length > RECENT_POINTS) this.recent.splice(0, this.recent.length - RECENT_POINTS);
    if (this.streaming) this.host.stream(points);
  }

  /** The gang's part of the worker's events; false for the events the session handles itself. */
  onWorkerEvent(event: FromWorker): boolean {
    switch (event.type) {
      case 'reduce':
        this.onReduce(event.id, event.data);
        return true;
      case 'gang_paused':
        this.onPaused(event.step);
        return true;
      case 'gang_state':
        this.stateWaiter?.(event.data);
        this.stateWaiter = undefined;
        return true;
      case 'gang_done':
        this.host.send({
          type: 'gang_done',
          jobId: this.host.jobId,
          epoch: this.host.epoch,
          generation: this.generation,
          step: event.step,
        });
        this.trainingDone();
        return true;
      default:
        return false;
    }
  }

  /** The coordinator seats this rank in a new generation. */
  onStart(start: GangStart): void {
    if (this.closed || start.generation <= this.generation) {
      this.host.log.info({ generation: start.generation, ours: this.generation }, 'gang_start for an old generation');
      return;
    }
    const old = this.comm;
    this.comm = undefined;
    if (old !== undefined) void old.abort(`generation ${this.generation} ends: generation ${start.generation} starts`);
    this.generation = start.generation;
    this.rankNow = start.rank;
    this.ranks = start.ranks;
    this.seated = true;
    this.stepMs = [];
    this.lastReduceAt = undefined;
    this.host.log.info(
      { generation: start.generation, rank: start.rank, ranks: start.ranks, root: start.rootAddress },
      `gang generation ${start.generation}: rank ${start.rank} of ${start.ranks}`,
    );
    void this.form(start).catch((error: unknown) =>
      this.broken(`generation ${start.generation}: ${(error as Error).message}`),
    );
  }

  /** The coordinator asks the gang to stop at the next step boundary (it grows, or a member left). */
  onReform(reform: GangReform): void {
    if (this.closed || reform.generation < this.generation) return;
    this.host.log.info({ generation: reform.generation, reason: reform.reason }, 'gang reforms');
    if (this.seated) {
      // The generation ends now: a sum in flight fails on every rank, each undoes that step, and the worker reports
      // from its step boundary (at once when it is paused already).
      this.leave(`reform: ${reform.reason}`, this.worker.kind !== 'training');
    } else if (this.worker.kind === 'paused') {
      // Never seated in the generation that is being replaced (it did not form): say where we stand.
      this.ready(this.worker.step);
    }
  }

  /** Rank 0 trained the last step (its final model is out): close the generation gently, the peers are done too. */
  trainingDone(): void {
    this.worker = { kind: 'done' };
    this.seated = false;
    const comm = this.comm;
    this.comm = undefined;
    void comm?.close();
  }

  /** The session ends: leave without a word to the peers beyond the abort. */
  close(): void {
    this.closed = true;
    this.streaming = false;
    const comm = this.comm;
    this.comm = undefined;
    if (comm !== undefined && this.worker.kind !== 'done') void comm.abort('the job ended on this rank');
  }

  private async form(start: GangStart): Promise<void> {
    const { host } = this;
    const generation = start.generation;
    const isCurrent = (): boolean => this.generation === generation && this.seated && !this.closed;
    const comm = await Communicator.create({
      rank: start.rank,
      size: start.ranks,
      rootAddress: start.rank === 0 ? host.peers.bind : (start.rootAddress as string),
      bindAddress: host.peers.bind,
      ...(host.peers.advertiseHost === undefined ? {} : { advertiseHost: host.peers.advertiseHost }),
      ...(host.peers.curve === undefined ? {} : { curve: host.peers.curve }),
      session: `${host.jobId} epoch ${host.epoch} generation ${generation}`,
      timeoutMs: start.collectiveTimeoutMs,
      joinTimeoutMs: JOIN_TIMEOUT_MS,
      lingerMs: 500,
      log: (line) => host.log.info({ gang: generation }, line),
      onListening: (address) => {
        if (start.rank === 0 && isCurrent())
          host.send({ type: 'gang_address', jobId: host.jobId, epoch: host.epoch, generation, address });
      },
    });
    if (!isCurrent()) {
      await comm.abort(`generation ${generation} was replaced while forming`);
      return;
    }
    this.comm = comm;
    const step = await this.pausedStep();
    if (!isCurrent()) return;
    // Everyone's applied step, each in its own slot (steps are far below 2^24, exact in float32).
    const slots = new Float32Array(start.ranks);
    slots[start.rank] = step + 1;
    const steps = Array.from(await comm.allreduce(slots, 'sum'), (s) => s - 1);
    const furthest = Math.max(...steps);
    const source = steps.indexOf(furthest);
    let state: Uint8Array | undefined;
    if (steps.some((s) => s !== furthest)) {
      // The metric points of the steps the others missed travel with the state: the next rank 0 may be one of them.
      const behind = Math.min(...steps);
      const mine: SyncState | undefined =
        start.rank === source
          ? { state: await this.snapshot(), points: this.recent.filter((p) => p.step > behind) }
          : undefined;
      const sent = await comm.bcast(mine, source);
      if (!isSyncState(sent)) throw new Error(`rank ${source} broadcast no state (got ${describe(sent)})`);
      if (step !== furthest) {
        state = sent.state;
        this.takePoints(sent.points, step);
      }
    }
    if (!isCurrent()) return;
    if (start.rank === 0) this.startStreaming(start.metricsFrom);
    host.log.info(
      { generation, rank: start.rank, steps, source, synced: state !== undefined },
      `gang generation ${generation} in step at ${furthest}${state === undefined ? '' : ` (state from rank ${source})`}`,
    );
    this.worker = { kind: 'training' };
    // A copy of its own to hand over: the received bytes may be a view into the transport's frame.
    const own = state?.slice();
    host.toWorker(
      { type: 'gang_resume', rank: start.rank, ranks: start.ranks, ...(own === undefined ? {} : { state: own }) },
      own === undefined ? [] : [own.buffer as ArrayBuffer],
    );
  }

  /** Points of the steps after `step` from the rank whose state this replica takes (its own never got past `step`). */
  private takePoints(points: readonly MetricPoint[], step: number): void {
    const kept = this.recent.filter((p) => p.step <= step);
    this.recent.length = 0;
    this.recent.push(...kept, ...points.filter((p) => p.step > step));
    if (this.recent.length > RECENT_POINTS) this.recent.splice(0, this.recent.length - RECENT_POINTS);
  }

  private startStreaming(metricsFrom: number): void {
    const missing = this.recent.filter((p) => p.step > metricsFrom);
    this.streaming = true;
    if (missing.length > 0) this.host.stream(missing);
  }

  private pausedStep(): Promise<number> {
    const w = this.worker;
    if (w.kind === 'paused') return Promise.resolve(w.step);
    return new Promise((resolve) => this.pausedWaiters.push(resolve));
  }

  private snapshot(): Promise<Uint8Array> {
    return new Promise((resolve) => {
      this.stateWaiter = resolve;
      this.host.toWorker({ type: 'gang_snapshot' });
    });
  }

  private onReduce(id: number, data: Float32Array): void {
    const comm = this.comm;
    if (comm === undefined || !this.seated) {
      this.host.toWorker({ type: 'reduce_failed', id, reason: `no gang generation to sum in (${this.leftReason})` });
      return;
    }
    this.measure(comm);
    comm.allreduce(data, 'sum', { inPlace: true }).then(
      (sum) => this.host.toWorker({ type: 'reduced', id, data: sum }, [sum.buffer as ArrayBuffer]),
      (error: unknown) => {
        this.host.toWorker({ type: 'reduce_failed', id, reason: (error as Error).message });
        this.broken((error as Error).message);
      },
    );
  }

  /** The collective timeout follows the step time: a dead peer is noticed within a few steps, never 30 s. */
  private measure(comm: Communicator): void {
    const now = performance.now();
    if (this.lastReduceAt !== undefined) this.stepMs.push(now - this.lastReduceAt);
    this.lastReduceAt = now;
    if (this.stepMs.length < MEASURED_STEPS) return;
    if (this.stepMs.length > 50) this.stepMs.splice(0, this.stepMs.length - 50);
    const sorted = [...this.stepMs].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] as number;
    const timeout = Math.max(MIN_TIMEOUT_MS, Math.ceil(TIMEOUT_STEPS * median));
    if (Math.abs(timeout - comm.timeoutMs) > comm.timeoutMs / 4) comm.timeoutMs = timeout;
  }

  private onPaused(step: number): void {
    this.worker = { kind: 'paused', step };
    for (const waiter of this.pausedWaiters.splice(0)) waiter(step);
    if (!this.seated && !this.closed) this.ready(step);
  }

  /** This generation is over for us: abort it (the peers' waits fail at once) and, when paused, say so. */
  private broken(reason: string): void {
    if (!this.seated || this.closed) return;
    this.host.log.warn({ generation: this.generation, reason }, `gang generation ${this.generation} broke: ${reason}`);
    this.leave(reason, this.worker.kind === 'paused');
  }

  private leave(reason: string, pausedNow: boolean): void {
    this.seated = false;
    this.leftReason = reason;
    this.streaming = false;
    const comm = this.comm;
    this.comm = undefined;
    if (comm !== undefined) void comm.abort(reason);
    // A training worker pauses at its next reduce (refused above), and onPaused reports then.
    if (pausedNow && this.worker.kind === 'paused') this.ready(this.worker.step);
  }

  private ready(step: number): void {
    // Metrics first: the coordinator's last step must be exact when it picks where a new rank 0 resumes streaming.
    this.host.flushMetrics();
    this.host.send({
      type: 'gang_ready',
      jobId: this.host.jobId,
      epoch: this.host.epoch,
      generation: this.generation,
      step,
      reason: this.leftReason,
    });
  }
}
