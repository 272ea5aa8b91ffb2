// MPI-style messaging between ranks over ZeroMQ: point-to-point send/recv with tags and source filters, and
// collectives (bcast, barrier, reduce, gather, allreduce). Each rank binds one ROUTER and reaches every other
// rank through its own DEALER, so messages between two ranks arrive in the order they were sent.
// Rank 0 listens at a known address; the others say hello there and get back everyone's address (peer_table).
// Collectives must be called in the same order on every rank (as in MPI): each gets the next sequence number,
// which tags its messages. Every wait has a deadline: a dead or stuck rank turns into a CommunicatorError,
// which is also sent to the other ranks (peer_abort) so they fail fast; after that the communicator is broken.
// close() returns only once what this rank sent has arrived (peer_bye), because a process that exits right after
// close() drops whatever ZeroMQ still had queued, and a neighbour still inside the last collective would stall.
import * as zmq from 'zeromq';
import { decodePeerMessage, encode, DEFAULT_MAX_FRAME_BYTES } from './codec.ts';
import { CommunicatorError, asMalformed } from './errors.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import { applyClientCurve, startCurveAuth } from './zmq-transport.ts';
import type { CurveAuth } from './zmq-transport.ts';
import type { PeerData, PeerMessage } from './messages.ts';

export const REDUCE_OPS = ['sum', 'mean', 'max', 'min'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

export interface CommunicatorOptions {
  rank: number;
  size: number;
  /** Where rank 0 listens, e.g. 'tcp://head-node:5600' (rank 0 may use port 0 and publish `address`). */
  rootAddress: string;
  /** Where ranks other than 0 listen; the OS picks the port. Default 'tcp://127.0.0.1:0'. */
  bindAddress?: string;
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
}

export interface Received {
  source: number;
  tag: number;
  data: unknown;
}

interface Envelope {
  source: number;
  channel: 'p2p' | 'coll';
  tag: number;
  data: unknown;
}

interface Waiter {
  match: (e: Envelope) => boolean;
  resolve: (e: Envelope) => void;
  reject: (error: CommunicatorError) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULTS = {
  timeoutMs: 30_000,
  chunkBytes: 1 << 20,
  highWaterMark: 10_000,
  lingerMs: 1000,
  bindAddress: 'tcp://127.0.0.1:0',
};

function checkInt(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new CommunicatorError(`${what}: expected an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value as number;
}

/** Segment i of n over length: [start, end), as even as integer division allows. */
function segment(length: number, n: number, i: number): [number, number] {
  return [Math.floor((length * i) / n), Math.floor((length * (i + 1)) / n)];
}

/** Float32Arrays at least this big skip msgpack and travel as a raw second frame. */
const BULK_MIN_BYTES = 4096;

/** A float32 view of a received frame of whole float32s (a copy only when the bytes are not 4-byte aligned). */
function floatsOf(frame: Buffer): Float32Array {
  if (frame.byteOffset % 4 === 0) return new Float32Array(frame.buffer, frame.byteOffset, frame.byteLength / 4);
  return new Float32Array(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength));
}

const mod = (a: number, n: number): number => ((a % n) + n) % n;

/**
 * chunk[i] = op(chunk[i], mine[i]), also written to mine when `store`: the received chunk holds the result, so it
 * can be forwarded as is.
 */
function combine(op: ReduceOp, chunk: Float32Array, mine: Float32Array, store: boolean): void {
  const n = chunk.length;
  if (op === 'max' || op === 'min') {
    if (op === 'max') for (let i = 0; i < n; i++) if (mine[i]! > chunk[i]!) chunk[i] = mine[i]!;
    if (op === 'min') for (let i = 0; i < n; i++) if (mine[i]! < chunk[i]!) chunk[i] = mine[i]!;
    if (store) mine.set(chunk);
    return;
  }
  // This loop is most of allreduce's CPU time and runs at memory speed, so it is unrolled by hand (V8 does not;
  // about 1.25x) and stores into both arrays in one pass (one pass less over memory than a separate copy).
  let i = 0;
  if (store) {
    for (; i + 4 <= n; i += 4) {
      const a = chunk[i]! + mine[i]!;
      const b = chunk[i + 1]! + mine[i + 1]!;
      const c = chunk[i + 2]! + mine[i + 2]!;
      const d = chunk[i + 3]! + mine[i + 3]!;
      chunk[i] = mine[i] = a;
      chunk[i + 1] = mine[i + 1] = b;
      chunk[i + 2] = mine[i + 2] = c;
      chunk[i + 3] = mine[i + 3] = d;
    }
    for (; i < n; i++) chunk[i] = mine[i] = chunk[i]! + mine[i]!;
  } else {
    for (; i + 4 <= n; i += 4) {
      chunk[i]! += mine[i]!;
      chunk[i + 1]! += mine[i + 1]!;
      chunk[i + 2]! += mine[i + 2]!;
      chunk[i + 3]! += mine[i + 3]!;
    }
    for (; i < n; i++) chunk[i]! += mine[i]!;
  }
}

export class Communicator {
  private readonly peers = new Map<number, { socket: zmq.Dealer; tail: Promise<unknown> }>();
  private addresses: string[] = [];
  private readonly unexpected: Envelope[] = [];
  private waiters: Waiter[] = [];
  private failure: CommunicatorError | undefined;
  private seq = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Peers that said bye (they need nothing more from this rank), and peers that acknowledged this rank's bye. */
  private readonly byes = new Set<number>();
  private readonly byesAcked = new Set<number>();
  private readonly byesSent = new Set<number>();
  private readonly loop: Promise<void>;
  private readonly timeoutMs: number;
  private readonly joinTimeoutMs: number;
  private readonly chunkFloats: number;
  private readonly highWaterMark: number;
  private readonly maxFrameBytes: number;
  private readonly lingerMs: number;
  private readonly log: ((line: string) => void) | undefined;
  private readonly curve: CommunicatorOptions['curve'];
  // Set-up state: hellos seen by rank 0, the table for the others.
  private readonly hellos = new Map<number, string>();
  private table: string[] | undefined;
  /** Wakes whoever naps in join() or close() to look at the state again. */
  private wake: (() => void) | undefined;

  private constructor(
    readonly rank: number,
    readonly size: number,
    private readonly router: zmq.Router,
    /** Where this rank listens (rank 0: the address the others connect to). */
    readonly address: string,
    private readonly auth: CurveAuth | undefined,
    options: CommunicatorOptions,
  ) {
    this.curve = options.curve;
    this.timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    this.joinTimeoutMs = options.joinTimeoutMs ?? Math.max(this.timeoutMs, DEFAULTS.timeoutMs);
    this.chunkFloats = Math.max(1, Math.floor((options.chunkBytes ?? DEFAULTS.chunkBytes) / 4));
    this.highWaterMark = options.highWaterMark ?? DEFAULTS.highWaterMark;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.lingerMs = options.lingerMs ?? DEFAULTS.lingerMs;
    this.log = options.log;
    this.loop = this.receiveLoop();
  }

  /**
   * Binds this rank and joins the others. Rank 0 returns once every rank has said hello; the others once
   * they have the address table. Rank 0 can bind port 0: create it first and hand `address` to the others.
   */
  static async create(options: CommunicatorOptions): Promise<Communicator> {
    const size = checkInt(options.size, 'size', 1);
    const rank = checkInt(options.rank, 'rank', 0, size - 1);
    const timeoutMs = checkInt(options.timeoutMs ?? DEFAULTS.timeoutMs, 'timeoutMs', 1);
    if (options.joinTimeoutMs !== undefined) checkInt(options.joinTimeoutMs, 'joinTimeoutMs', 1);
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    let auth: CurveAuth | undefined;
    try {
      auth =
        options.curve === undefined
          ? undefined
          : await startCurveAuth({ ...options.curve, allowedClientKeys: [options.curve.publicKey] }, options.log);
    } catch (error) {
      throw new CommunicatorError(`rank ${rank}: CURVE set-up failed: ${(error as Error).message}`, { cause: error });
    }
    const router = new zmq.Router({
      ...(auth === undefined ? {} : { context: auth.context }),
      linger: 0,
      receiveHighWaterMark: options.highWaterMark ?? DEFAULTS.highWaterMark,
      maxMessageSize: maxFrameBytes * 2 + 1024,
    });
    auth?.apply(router);
    const bindAt = rank === 0 ? options.rootAddress : (options.bindAddress ?? DEFAULTS.bindAddress);
    if (size > 1 || rank !== 0) {
      try {
        await router.bind(bindAt);
      } catch (error) {
        router.close();
        auth?.close();
        throw new CommunicatorError(`rank ${rank}: could not bind ${bindAt}: ${(error as Error).message}`, {
          cause: error,
          retryable: true,
        });
      }
    }
    let address = router.lastEndpoint ?? bindAt;
    if (options.advertiseHost !== undefined)
      address = address.replace(/^(\w+:\/\/)(0\.0\.0\.0|\*|\[::\])/, `$1${options.advertiseHost}`);
    auth?.start();
    const comm = new Communicator(rank, size, router, address, auth, { ...options, timeoutMs });
    options.onListening?.(address);
    try {
      await comm.join(options.rootAddress);
    } catch (error) {
      await comm.close();
      throw error;
    }
    return comm;
  }

  // --- set-up ----------------------------------------------------------------------------------

  private async join(rootAddress: string): Promise<void> {
    if (this.size === 1) {
      this.addresses = [this.address];
      return;
    }
    const deadline = Date.now() + this.joinTimeoutMs;
    if (this.rank === 0) {
      await this.waitSetup(
        () => this.hellos.size === this.size - 1,
        deadline,
        () => {
          const missing = [...Array(this.size).keys()].filter((r) => r > 0 && !this.hellos.has(r));
          return `waiting for ranks ${missing.join(', ')} to join at ${this.address}`;
        },
      );
      this.addresses = [...Array(this.size).keys()].map((r) => (r === 0 ? this.address : this.hellos.get(r)!));
      const table: PeerMessage = { type: 'peer_table', version: PROTOCOL_VERSION, addresses: this.addresses };
      await Promise.all(this.addresses.map((_, r) => (r === 0 ? undefined : this.sendMessage(r, table))));
    } else {
      this.connectPeer(0, rootAddress);
      await this.sendMessage(0, {
        type: 'peer_hello',
        version: PROTOCOL_VERSION,
        rank: this.rank,
        size: this.size,
        address: this.address,
      });
      await this.waitSetup(
        () => this.table !== undefined,
        deadline,
        () => `waiting for the address table from rank 0 at ${rootAddress}`,
      );
      this.addresses = this.table!;
    }
  }

  private async waitSetup(done: () => boolean, deadline: number, what: () => string): Promise<void> {
    while (!done()) {
      if (this.failure !== undefined) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0)
        throw this.fail(
          new CommunicatorError(`rank ${this.rank}: timed out after ${this.joinTimeoutMs} ms ${what()}`, {
            retryable: true,
          }),
          false,
        );
      await this.nap(left);
    }
  }

  /** Resolves after ms, or sooner when the receive loop calls wake(). */
  private nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  // --- receiving -------------------------------------------------------------------------------

  private async receiveLoop(): Promise<void> {
    for (;;) {
      let frames: Buffer[];
      try {
        frames = await this.router.receive();
      } catch {
        break; // closed
      }
      const body = frames[1];
      const bulk = frames[2];
      if (frames.length < 2 || frames.length > 3 || body === undefined) {
        this.log?.(`rank ${this.rank}: refused a message of ${frames.length - 1} frames (expected 1 or 2)`);
        continue;
      }
      let message: PeerMessage;
      try {
        message = decodePeerMessage(body, { maxBytes: this.maxFrameBytes });
        if (message.type === 'peer_data' && (message.bulk !== undefined || bulk !== undefined)) {
          const m = message;
          const from = `${m.channel === 'coll' ? `collective #${m.tag}` : `tag ${m.tag}`} from rank ${m.source}`;
          if (bulk === undefined) throw new Error(`${from}: bulk ${String(m.bulk)} without its second frame`);
          if (m.bulk === undefined) throw new Error(`${from}: a second frame without bulk set`);
          if (bulk.byteLength % 4 !== 0)
            throw new Error(`${from}: bulk frame of ${bulk.byteLength} bytes is not a whole number of float32s`);
          message = { ...m, data: floatsOf(bulk) };
        } else if (bulk !== undefined) throw new Error(`a second frame on a ${message.type}`);
      } catch (error) {
        this.log?.(`rank ${this.rank}: refused a frame from ${peerName(frames[0])}: ${asMalformed(error).message}`);
        continue;
      }
      this.handle(message);
    }
  }

  private handle(message: PeerMessage): void {
    switch (message.type) {
      case 'peer_data':
        if (message.source >= this.size) {
          this.log?.(
            `rank ${this.rank}: ignored data from rank ${message.source}, which is not in a communicator of size ${this.size}`,
          );
          return;
        }
        this.deliver(message);
        return;
      case 'peer_abort':
        this.fail(
          new CommunicatorError(`rank ${this.rank}: rank ${message.source} aborted: ${message.reason}`, {
            retryable: true,
          }),
          false,
        );
        return;
      case 'peer_hello':
        this.onHello(message);
        return;
      case 'peer_bye':
        if (message.source >= this.size || message.source === this.rank) return;
        if (message.ack) {
          this.byesAcked.add(message.source);
        } else {
          this.byes.add(message.source);
          // A rank that sent its own bye is answered by that, and may already be gone.
          if (!this.byesSent.has(message.source))
            void this.sendMessage(message.source, { type: 'peer_bye', source: this.rank, ack: true }).catch(
              () => undefined,
            );
        }
        this.wake?.();
        return;
      case 'peer_table':
        if (this.rank === 0) return;
        if (message.version !== PROTOCOL_VERSION || message.addresses.length !== this.size) {
          this.fail(
            new CommunicatorError(
              `rank ${this.rank}: rank 0 sent a table for ${message.addresses.length} ranks at protocol ${message.version}; ours is ${this.size} ranks at protocol ${PROTOCOL_VERSION}`,
            ),
            false,
          );
          return;
        }
        this.table = message.addresses;
        this.wake?.();
        return;
    }
  }

  private onHello(hello: Extract<PeerMessage, { type: 'peer_hello' }>): void {
    if (this.rank !== 0) return;
    let problem: string | undefined;
    if (hello.version !== PROTOCOL_VERSION)
      problem = `protocol version mismatch: rank 0 speaks ${PROTOCOL_VERSION}, rank ${hello.rank} speaks ${hello.version}`;
    else if (hello.size !== this.size)
      problem = `size mismatch: rank 0 has size ${this.size}, rank ${hello.rank} has size ${hello.size}`;
    else if (hello.rank === 0 || hello.rank >= this.size)
      problem = `rank ${hello.rank} is out of range for size ${this.size}`;
    else if (this.hellos.has(hello.rank) && this.hellos.get(hello.rank) !== hello.address)
      problem = `rank ${hello.rank} joined twice (${this.hellos.get(hello.rank)} and ${hello.address})`;
    if (problem !== undefined) {
      this.log?.(`rank 0: refused ${hello.address}: ${problem}`);
      // Tell the newcomer why, on a throwaway socket, so it fails at once instead of timing out.
      const socket = new zmq.Dealer({ linger: 200, sendTimeout: 200 });
      if (this.curve !== undefined) applyClientCurve(socket, this.clientCurve(this.curve));
      socket.connect(hello.address);
      const abort: PeerMessage = { type: 'peer_abort', source: 0, reason: problem };
      void socket
        .send(encode(abort))
        .catch(() => undefined)
        .finally(() => socket.close());
      return;
    }
    this.hellos.set(hello.rank, hello.address);
    this.connectPeer(hello.rank, hello.address);
    this.wake?.();
  }

  private deliver(envelope: Envelope): void {
    const index = this.waiters.findIndex((w) => w.match(envelope));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      clearTimeout(waiter!.timer);
      waiter!.resolve(envelope);
    } else {
      this.unexpected.push(envelope);
    }
  }

  /** The first queued or future message that matches, or CommunicatorError after timeoutMs. */
  private wait(match: (e: Envelope) => boolean, what: () => string): Promise<Envelope> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const index = this.unexpected.findIndex(match);
    if (index >= 0) return Promise.resolve(this.unexpected.splice(index, 1)[0]!);
    return new Promise<Envelope>((resolve, reject) => {
      const waiter: Waiter = { match, resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          this.fail(
            new CommunicatorError(`rank ${this.rank}: timed out after ${this.timeoutMs} ms ${what()}`, {
              retryable: true,
            }),
            true,
          ),
        );
      }, this.timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Breaks the communicator: every wait, now and later, fails with this error; optionally tells the others. */
  private fail(error: CommunicatorError, tellOthers: boolean): CommunicatorError {
    if (this.failure !== undefined) return this.failure;
    this.failure = error;
    this.log?.(error.message);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    this.wake?.();
    if (tellOthers) {
      const abort: PeerMessage = { type: 'peer_abort', source: this.rank, reason: error.message };
      for (let r = 0; r < this.size; r++)
        if (r !== this.rank && this.peers.has(r)) void this.sendMessage(r, abort).catch(() => undefined);
    }
    return error;
  }

  // --- sending ---------------------------------------------------------------------------------

  private connectPeer(rank: number, address: string): void {
    if (this.peers.has(rank)) return;
    const socket = new zmq.Dealer({
      linger: this.lingerMs,
      sendHighWaterMark: this.highWaterMark,
      sendTimeout: this.timeoutMs,
      maxMessageSize: this.maxFrameBytes * 2 + 1024,
    });
    if (this.curve !== undefined) applyClientCurve(socket, this.clientCurve(this.curve));
    socket.connect(address);
    this.peers.set(rank, { socket, tail: Promise.resolve() });
  }

  /** Every rank serves with the same cluster pair, so it is also the server key to expect from every peer. */
  private clientCurve(curve: NonNullable<CommunicatorOptions['curve']>): {
    serverPublicKey: string;
    publicKey: string;
    secretKey: string;
  } {
    return { serverPublicKey: curve.publicKey, publicKey: curve.publicKey, secretKey: curve.secretKey };
  }

  private peer(rank: number): { socket: zmq.Dealer; tail: Promise<unknown> } {
    let peer = this.peers.get(rank);
    if (peer === undefined) {
      const address = this.addresses[rank];
      if (address === undefined) throw new CommunicatorError(`rank ${this.rank}: no address for rank ${rank}`);
      this.connectPeer(rank, address);
      peer = this.peers.get(rank)!;
    }
    return peer;
  }

  private sendMessage(to: number, message: PeerMessage, bulk?: Uint8Array): Promise<void> {
    const bytes = encode(message);
    const peer = this.peer(to);
    // One send at a time per socket (zeromq.js refuses a second blocked send with EBUSY).
    const sent = peer.tail.then(() => peer.socket.send(bulk === undefined ? bytes : [bytes, bulk]));
    peer.tail = sent.catch(() => undefined);
    return sent.catch((error: unknown) => {
      throw new CommunicatorError(`rank ${this.rank}: send to rank ${to} failed: ${(error as Error).message}`, {
        cause: error,
        retryable: true,
      });
    });
  }

  /** `owned`: the array is never written again, so ZeroMQ may send from it without a copy. */
  private sendData(to: number, channel: 'p2p' | 'coll', tag: number, data: unknown, owned = false): Promise<void> {
    if (to === this.rank) {
      this.deliver({ source: this.rank, channel, tag, data });
      return Promise.resolve();
    }
    if (data instanceof Float32Array && data.byteLength >= BULK_MIN_BYTES) {
      // Copied, because ZeroMQ may still read the bytes after send() returns while the caller reuses its array.
      const bulk = owned
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      return this.sendMessage(
        to,
        { type: 'peer_data', source: this.rank, channel, tag, data: null, bulk: 'f32' },
        bulk,
      );
    }
    const message: PeerData = { type: 'peer_data', source: this.rank, channel, tag, data };
    return this.sendMessage(to, message);
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new CommunicatorError(`rank ${this.rank}: the communicator is closed`);
  }

  // --- point to point --------------------------------------------------------------------------

  /** Sends any msgpack value (typed arrays stay typed) to rank `to` with a tag (default 0). */
  async send(to: number, data: unknown, tag = 0): Promise<void> {
    this.check();
    checkInt(to, 'send: to', 0, this.size - 1);
    checkInt(tag, 'send: tag', 0);
    await this.sendData(to, 'p2p', tag, data);
  }

  /** The next message matching the filters: source a rank or a list of ranks, tag a number; absent = any. */
  async recv(filter: { source?: number | number[]; tag?: number } = {}): Promise<Received> {
    this.check();
    const sources =
      filter.source === undefined ? undefined : new Set(Array.isArray(filter.source) ? filter.source : [filter.source]);
    const tag = filter.tag;
    const e = await this.wait(
      (m) =>
        m.channel === 'p2p' && (sources === undefined || sources.has(m.source)) && (tag === undefined || m.tag === tag),
      () =>
        `in recv from ${sources === undefined ? 'any rank' : `rank ${[...sources].join('|')}`} with ${tag === undefined ? 'any tag' : `tag ${tag}`}`,
    );
    return { source: e.source, tag: e.tag, data: e.data };
  }

  // --- collectives -----------------------------------------------------------------------------

  private recvColl(source: number, seq: number, what: string): Promise<unknown> {
    return this.wait(
      (m) => m.channel === 'coll' && m.tag === seq && m.source === source,
      () => `in ${what} (collective #${seq}) waiting for rank ${source}; it may have died`,
    ).then((e) => e.data);
  }

  private async recvFloats(source: number, seq: number, length: number, what: string): Promise<Float32Array> {
    const data = await this.recvColl(source, seq, what);
    if (!(data instanceof Float32Array) || data.length !== length) {
      const got = data instanceof Float32Array ? `${data.length} floats` : typeof data;
      throw this.fail(
        new CommunicatorError(
          `rank ${this.rank}: ${what} (collective #${seq}): rank ${source} sent ${got}, expected ${length} floats; do all ranks pass arrays of the same length?`,
        ),
        true,
      );
    }
    return data;
  }

  /** Root's value, on every rank (binomial tree, so the root sends log2(size) times). */
  async bcast<T>(value: T, root = 0): Promise<T> {
    this.check();
    checkInt(root, 'bcast: root', 0, this.size - 1);
    const seq = this.seq++;
    const n = this.size;
    const vr = mod(this.rank - root, n);
    let result: unknown = value;
    let mask = 1;
    while (mask < n) {
      if ((vr & mask) !== 0) {
        result = await this.recvColl(mod(vr - mask + root, n), seq, 'bcast');
        break;
      }
      mask <<= 1;
    }
    mask >>= 1;
    const sends: Promise<void>[] = [];
    while (mask > 0) {
      if (vr + mask < n) sends.push(this.sendData(mod(vr + mask + root, n), 'coll', seq, result));
      mask >>= 1;
    }
    await Promise.all(sends);
    return result as T;
  }

  /** Every rank's value at root, in rank order; undefined on the other ranks. */
  async gather<T>(value: T, root = 0): Promise<T[] | undefined> {
    this.check();
    checkInt(root, 'gather: root', 0, this.size - 1);
    const seq = this.seq++;
    if (this.rank !== root) {
      await this.sendData(root, 'coll', seq, value);
      return undefined;
    }
    const out: unknown[] = [];
    for (let r = 0; r < this.size; r++) out.push(r === root ? value : await this.recvColl(r, seq, 'gather'));
    return out as T[];
  }

  /** Returns once every rank has called barrier. */
  async barrier(): Promise<void> {
    await this.gather(null, 0);
    await this.bcast(null, 0);
  }

  /** The element-wise reduction of every rank's array at root; undefined on the other ranks. */
  async reduce(data: Float32Array, op: ReduceOp = 'sum', root = 0): Promise<Float32Array | undefined> {
    this.check();
    checkInt(root, 'reduce: root', 0, this.size - 1);
    if (!REDUCE_OPS.includes(op))
      throw new CommunicatorError(`reduce: unknown op ${String(op)}; known: ${REDUCE_OPS.join(', ')}`);
    const seq = this.seq++;
    if (this.rank !== root) {
      await this.sendChunks(root, seq, data, 0, data.length);
      return undefined;
    }
    const out = data.slice();
    for (let r = 0; r < this.size; r++) {
      if (r !== root) {
        await this.recvChunks(r, seq, out, 0, out.length, {
          op: op === 'mean' ? 'sum' : op,
          divideBy: 1,
          store: true,
          forward: undefined,
          sends: [],
          what: 'reduce',
        });
      }
    }
    if (op === 'mean') for (let i = 0; i < out.length; i++) out[i]! /= this.size;
    return out;
  }

  /**
   * The element-wise reduction of every rank's array, on every rank: a ring reduce-scatter then a ring
   * allgather, so each rank sends and receives 2(n-1)/n of the array whatever n is.
   */
  async allreduce(
    data: Float32Array,
    op: ReduceOp = 'sum',
    options: { inPlace?: boolean } = {},
  ): Promise<Float32Array> {
    this.check();
    if (!(data instanceof Float32Array))
      throw new CommunicatorError(`allreduce: expected a Float32Array, got ${typeof data}`);
    if (!REDUCE_OPS.includes(op))
      throw new CommunicatorError(`allreduce: unknown op ${String(op)}; known: ${REDUCE_OPS.join(', ')}`);
    const seq = this.seq++;
    const n = this.size;
    // inPlace writes the result into data (no 2nd array of the full size: e.g. gradients reduced where they lie).
    const out = options.inPlace === true ? data : data.slice();
    if (n === 1) return out;
    const right = mod(this.rank + 1, n);
    const left = mod(this.rank - 1, n);
    const reduceOp: ReduceOp = op === 'mean' ? 'sum' : op;
    const sends: Promise<void>[] = [];
    const seg = (k: number): [number, number] => segment(out.length, n, mod(k, n));
    // Pipelined ring: only segment `rank` is sent up front; every later send forwards a chunk as soon as it is
    // ready, so the transfer of one chunk overlaps the reduction of the next.
    // Segment `rank` goes without a copy: out is ours for the call, and that segment is next written when its
    // final value comes back round the ring, which cannot happen before the bytes sent from it have arrived.
    sends.push(this.sendChunks(right, seq, out, ...seg(this.rank), true));
    // Reduce-scatter: step s reduces segment rank-s-1 and forwards it (step s+1's send). After n-1 steps this
    // rank holds the full reduction of segment rank+1, which is also the first allgather send. Partial sums
    // before the last step are only forwarded, never stored: the allgather overwrites those segments.
    for (let step = 0; step < n - 1; step++) {
      const last = step === n - 2;
      await this.recvChunks(left, seq, out, ...seg(this.rank - step - 1), {
        op: reduceOp,
        divideBy: last && op === 'mean' ? n : 1,
        store: last,
        forward: right,
        sends,
        what: 'allreduce reduce-scatter',
      });
    }
    // Allgather: step s copies segment rank-s and forwards it, except on the last step.
    for (let step = 0; step < n - 1; step++) {
      await this.recvChunks(left, seq, out, ...seg(this.rank - step), {
        op: undefined,
        divideBy: 1,
        store: true,
        forward: step < n - 2 ? right : undefined,
        sends,
        what: 'allreduce allgather',
      });
    }
    await Promise.all(sends);
    return out;
  }

  /** Sends out[start, end) in chunks, copied unless `owned` (see sendData). */
  private sendChunks(
    to: number,
    seq: number,
    out: Float32Array,
    start: number,
    end: number,
    owned = false,
  ): Promise<void> {
    const sends: Promise<void>[] = [];
    for (let i = start; i < end || (i === start && start === end); i += this.chunkFloats) {
      sends.push(this.sendData(to, 'coll', seq, out.subarray(i, Math.min(end, i + this.chunkFloats)), owned));
      if (start === end) break;
    }
    return Promise.all(sends).then(() => undefined);
  }

  /**
   * Receives out[start, end) in chunks from `from`: each is combined with op and out (taken as is when op is
   * undefined), divided by divideBy (for mean), written to out when `store`, and forwarded to `forward` when set.
   */
  private async recvChunks(
    from: number,
    seq: number,
    out: Float32Array,
    start: number,
    end: number,
    how: {
      op: ReduceOp | undefined;
      divideBy: number;
      store: boolean;
      forward: number | undefined;
      sends: Promise<void>[];
      what: string;
    },
  ): Promise<void> {
    for (let i = start; i < end || (i === start && start === end); i += this.chunkFloats) {
      const stop = Math.min(end, i + this.chunkFloats);
      const chunk = await this.recvFloats(from, seq, stop - i, how.what);
      const mine = out.subarray(i, stop);
      // The received chunk is ours and never read again after this, so it takes the result and is forwarded
      // without a copy.
      if (how.op === undefined) {
        if (how.store) mine.set(chunk);
      } else if (how.divideBy === 1) {
        combine(how.op, chunk, mine, how.store);
      } else {
        combine(how.op, chunk, mine, false);
        for (let j = 0; j < chunk.length; j++) chunk[j]! /= how.divideBy;
        if (how.store) mine.set(chunk);
      }
      if (how.forward !== undefined) how.sends.push(this.sendData(how.forward, 'coll', seq, chunk, true));
      if (start === end) break;
    }
  }

  /**
   * Closes the sockets once every peer this rank sent to has confirmed that all of it arrived, or has said bye
   * itself (so needs nothing more from this rank), waiting at most lingerMs. Pending waits fail.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.failure === undefined) {
      this.failure = new CommunicatorError(`rank ${this.rank}: the communicator is closed`);
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(this.failure);
      }
      this.waiters = [];
      this.wake?.();
      await this.sayBye();
    } else {
      // A broken communicator has nobody left to deliver to: drop what is queued instead of lingering.
      for (const peer of this.peers.values()) peer.socket.linger = 0;
      this.wake?.();
    }
    for (const peer of this.peers.values()) peer.socket.close();
    this.router.close();
    this.auth?.close();
    await this.loop;
  }

  /** Sends peer_bye after everything else and waits for the answers (see PeerBye in messages.ts). */
  private async sayBye(): Promise<void> {
    const deadline = Date.now() + this.lingerMs;
    const unconfirmed = (): number[] =>
      [...this.peers.keys()].filter((r) => !this.byes.has(r) && !this.byesAcked.has(r));
    for (const r of unconfirmed()) {
      this.byesSent.add(r);
      void this.sendMessage(r, { type: 'peer_bye', source: this.rank, ack: false }).catch(() => undefined);
    }
    while (unconfirmed().length > 0 && Date.now() < deadline) await this.nap(deadline - Date.now());
    const missing = unconfirmed();
    if (missing.length > 0)
      this.log?.(
        `rank ${this.rank}: closing without word from rank ${missing.join(', ')} after ${this.lingerMs} ms; what was sent to them may be lost`,
      );
  }
}

function peerName(routingId: Buffer | undefined): string {
  return routingId === undefined ? 'an unknown peer' : `0x${routingId.toString('hex')}`;
}
