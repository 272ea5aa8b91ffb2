// MPI-style messaging between ranks: point-to-point send/recv with tags and source filters, and collectives (bcast,
// barrier, reduce, gather, allreduce; the algorithms are in collectives.ts, their arithmetic in reduce-ops.ts).
// Ranks talk over a PeerTransport: ZeroMQ by default (zmq-peer-transport.ts), an in-memory network in logic tests.
// Rank 0 listens at a known address; the others say hello there and get back everyone's address (peer_table).
// Collectives must be called in the same order on every rank (as in MPI): each gets the next sequence number,
// which tags its messages. Every wait has a deadline: a dead or stuck rank turns into a CommunicatorError,
// which is also sent to the other ranks (peer_abort) so they fail fast; after that the communicator is broken.
// close() returns only once what this rank sent has arrived (peer_bye), because a process that exits right after
// close() drops whatever ZeroMQ still had queued, and a neighbour still inside the last collective would stall.
import { systemClock, type Clock } from './clock.ts';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.ts';
import { allreduce, bcast, gather, reduce, type CollectiveLink } from './collectives.ts';
import { raceDeadline } from './deadline.ts';
import { CommunicatorError } from './errors.ts';
import { Mailbox, type Envelope } from './mailbox.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import type { PeerData, PeerMessage } from './messages.ts';
import { COMMUNICATOR_DEFAULTS, checkInt, checkOp, type CommunicatorOptions } from './communicator-options.ts';
import type { ReduceOp } from './reduce-ops.ts';
import type { PeerTransport } from './transport.ts';
import { bindZmqPeer } from './zmq-peer-transport.ts';

export { REDUCE_OPS, type ReduceOp } from './reduce-ops.ts';
export type { CommunicatorOptions } from './communicator-options.ts';

export interface Received {
  source: number;
  tag: number;
  data: unknown;
}

/** Float32Arrays at least this big skip msgpack and travel as a raw second frame. */
const BULK_MIN_BYTES = 4096;

/** A communicator of one has nobody to talk to: it binds nothing, and everything it sends is to itself. */
function soloTransport(address: string): PeerTransport {
  return {
    address,
    start: () => undefined,
    send: (to) => Promise.reject(new Error(`no peer at ${to} in a communicator of one`)),
    tell: () => undefined,
    close: () => Promise.resolve(),
  };
}

export class Communicator {
  /** The ranks this one has sent to, with their addresses: they are owed a peer_bye on close. */
  private readonly peers = new Map<number, string>();
  private addresses: string[] = [];
  private readonly mailbox: Mailbox;
  private failure: CommunicatorError | undefined;
  private seq = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Peers that said bye (they need nothing more from this rank), and peers that acknowledged this rank's bye. */
  private readonly byes = new Set<number>();
  private readonly byesAcked = new Set<number>();
  private readonly byesSent = new Set<number>();
  private timeoutMsNow: number;
  private readonly session: string | undefined;
  private readonly joinTimeoutMs: number;
  private readonly lingerMs: number;
  private readonly log: ((line: string) => void) | undefined;
  private readonly clock: Clock;
  private readonly link: CollectiveLink;
  // Set-up state: hellos seen by rank 0, the table for the others.
  private readonly hellos = new Map<number, string>();
  private table: string[] | undefined;
  /** Wakes whoever naps in join() or close() to look at the state again. */
  private wake: (() => void) | undefined;

  private constructor(
    readonly rank: number,
    readonly size: number,
    private readonly transport: PeerTransport,
    /** Where this rank listens (rank 0: the address the others connect to). */
    readonly address: string,
    options: CommunicatorOptions,
  ) {
    this.timeoutMsNow = options.timeoutMs ?? COMMUNICATOR_DEFAULTS.timeoutMs;
    this.session = options.session;
    this.joinTimeoutMs = options.joinTimeoutMs ?? Math.max(this.timeoutMsNow, COMMUNICATOR_DEFAULTS.timeoutMs);
    this.lingerMs = options.lingerMs ?? COMMUNICATOR_DEFAULTS.lingerMs;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.mailbox = new Mailbox(this.timeoutMsNow, this.clock);
    this.link = {
      rank,
      size,
      chunkFloats: Math.max(1, Math.floor((options.chunkBytes ?? COMMUNICATOR_DEFAULTS.chunkBytes) / 4)),
      send: (to, seq, data, owned) => this.sendData(to, 'coll', seq, data, owned),
      receive: (from, seq, what) => this.recvColl(from, seq, what),
      receiveFloats: (from, seq, length, what) => this.recvFloats(from, seq, length, what),
    };
    transport.start((message) => this.handle(message));
  }

  /**
   * Binds this rank and joins the others. Rank 0 returns once every rank has said hello; the others once
   * they have the address table. Rank 0 can bind port 0: create it first and hand `address` to the others.
   */
  static async create(options: CommunicatorOptions): Promise<Communicator> {
    const size = checkInt(options.size, 'size', 1);
    const rank = checkInt(options.rank, 'rank', 0, size - 1);
    const timeoutMs = checkInt(options.timeoutMs ?? COMMUNICATOR_DEFAULTS.timeoutMs, 'timeoutMs', 1);
    if (options.joinTimeoutMs !== undefined) checkInt(options.joinTimeoutMs, 'joinTimeoutMs', 1);
    const bindAt = rank === 0 ? options.rootAddress : (options.bindAddress ?? COMMUNICATOR_DEFAULTS.bindAddress);
    const bind =
      options.bindTransport ??
      ((address: string) =>
        bindZmqPeer({
          address,
          name: `rank ${rank}`,
          highWaterMark: options.highWaterMark ?? COMMUNICATOR_DEFAULTS.highWaterMark,
          maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
          sendTimeoutMs: timeoutMs,
          lingerMs: options.lingerMs ?? COMMUNICATOR_DEFAULTS.lingerMs,
          ...(options.curve === undefined ? {} : { curve: options.curve }),
          ...(options.log === undefined ? {} : { log: options.log }),
        }));
    let transport: PeerTransport;
    try {
      transport = size === 1 ? soloTransport(bindAt) : await bind(bindAt);
    } catch (error) {
      const retryable = (error as { retryable?: unknown }).retryable === true;
      throw new CommunicatorError(`rank ${rank}: ${(error as Error).message}`, { cause: error, retryable });
    }
    let address = transport.address;
    if (options.advertiseHost !== undefined)
      address = address.replace(/^(\w+:\/\/)(0\.0\.0\.0|\*|\[::\])/, `$1${options.advertiseHost}`);
    const comm = new Communicator(rank, size, transport, address, { ...options, timeoutMs });
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
    const deadline = this.clock.now() + this.joinTimeoutMs;
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
      this.peers.set(0, rootAddress);
      await this.sendMessage(0, {
        type: 'peer_hello',
        version: PROTOCOL_VERSION,
        rank: this.rank,
        size: this.size,
        address: this.address,
        ...(this.session === undefined ? {} : { session: this.session }),
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
      const left = deadline - this.clock.now();
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
  private async nap(ms: number): Promise<void> {
    const woken = new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
    await raceDeadline(woken, ms, this.clock);
  }

  // --- receiving -------------------------------------------------------------------------------

  private handle(message: PeerMessage): void {
    switch (message.type) {
      case 'peer_data':
        if (message.source >= this.size) {
          this.log?.(
            `rank ${this.rank}: ignored data from rank ${message.source}, which is not in a communicator of size ${this.size}`,
          );
          return;
        }
        this.mailbox.deliver(message);
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
    else if ((hello.session ?? '') !== (this.session ?? ''))
      problem = `session mismatch: rank 0 is in ${this.session ?? 'no session'}, rank ${hello.rank} in ${hello.session ?? 'no session'}`;
    else if (hello.size !== this.size)
      problem = `size mismatch: rank 0 has size ${this.size}, rank ${hello.rank} has size ${hello.size}`;
    else if (hello.rank === 0 || hello.rank >= this.size)
      problem = `rank ${hello.rank} is out of range for size ${this.size}`;
    else if (this.hellos.has(hello.rank) && this.hellos.get(hello.rank) !== hello.address)
      problem = `rank ${hello.rank} joined twice (${this.hellos.get(hello.rank)} and ${hello.address})`;
    if (problem !== undefined) {
      this.log?.(`rank 0: refused ${hello.address}: ${problem}`);
      // Tell the newcomer why, so it fails at once instead of timing out.
      this.transport.tell(hello.address, { type: 'peer_abort', source: 0, reason: problem });
      return;
    }
    this.hellos.set(hello.rank, hello.address);
    this.peers.set(hello.rank, hello.address);
    this.wake?.();
  }

  /** The first kept or future message that matches, or CommunicatorError after timeoutMs. */
  private wait(match: (e: Envelope) => boolean, what: () => string): Promise<Envelope> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.mailbox.take(match, () =>
      this.fail(
        new CommunicatorError(`rank ${this.rank}: timed out after ${this.timeoutMsNow} ms ${what()}`, {
          retryable: true,
        }),
        true,
      ),
    );
  }

  /** Breaks the communicator: every wait, now and later, fails with this error; optionally tells the others. */
  private fail(error: CommunicatorError, tellOthers: boolean): CommunicatorError {
    if (this.failure !== undefined) return this.failure;
    this.failure = error;
    this.log?.(error.message);
    this.mailbox.rejectAll(error);
    this.wake?.();
    if (tellOthers) {
      const abort: PeerMessage = { type: 'peer_abort', source: this.rank, reason: error.message };
      for (let r = 0; r < this.size; r++)
        if (r !== this.rank && this.peers.has(r)) void this.sendMessage(r, abort).catch(() => undefined);
    }
    return error;
  }

  // --- sending ---------------------------------------------------------------------------------

  private sendMessage(to: number, message: PeerMessage, bulk?: Uint8Array): Promise<void> {
    let address = this.peers.get(to);
    if (address === undefined) {
      address = this.addresses[to];
      if (address === undefined) throw new CommunicatorError(`rank ${this.rank}: no address for rank ${to}`);
      this.peers.set(to, address);
    }
    return this.transport.send(address, message, bulk).catch((error: unknown) => {
      throw new CommunicatorError(`rank ${this.rank}: send to rank ${to} failed: ${(error as Error).message}`, {
        cause: error,
        retryable: true,
      });
    });
  }

  /** `owned`: the array is never written again, so the transport may send from it without a copy. */
  private sendData(to: number, channel: 'p2p' | 'coll', tag: number, data: unknown, owned = false): Promise<void> {
    if (to === this.rank) {
      this.mailbox.deliver({ source: this.rank, channel, tag, data });
      return Promise.resolve();
    }
    if (data instanceof Float32Array && data.byteLength >= BULK_MIN_BYTES) {
      // Copied, because the transport may still read the bytes after send() returns while the caller reuses its array.
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
  bcast<T>(value: T, root = 0): Promise<T> {
    this.check();
    checkInt(root, 'bcast: root', 0, this.size - 1);
    return bcast(this.link, this.seq++, value, root);
  }

  /** Every rank's value at root, in rank order; undefined on the other ranks. */
  gather<T>(value: T, root = 0): Promise<T[] | undefined> {
    this.check();
    checkInt(root, 'gather: root', 0, this.size - 1);
    return gather(this.link, this.seq++, value, root);
  }

  /** Returns once every rank has called barrier. */
  async barrier(): Promise<void> {
    await this.gather(null, 0);
    await this.bcast(null, 0);
  }

  /** The element-wise reduction of every rank's array at root; undefined on the other ranks. */
  reduce(data: Float32Array, op: ReduceOp = 'sum', root = 0): Promise<Float32Array | undefined> {
    this.check();
    checkInt(root, 'reduce: root', 0, this.size - 1);
    return reduce(this.link, this.seq++, data, checkOp(op, 'reduce'), root);
  }

  /**
   * The element-wise reduction of every rank's array, on every rank (ring allreduce). `inPlace` writes the result
   * into data instead of a new array.
   */
  allreduce(data: Float32Array, op: ReduceOp = 'sum', options: { inPlace?: boolean } = {}): Promise<Float32Array> {
    this.check();
    if (!(data instanceof Float32Array))
      throw new CommunicatorError(`allreduce: expected a Float32Array, got ${typeof data}`);
    return allreduce(this.link, this.seq++, data, checkOp(op, 'allreduce'), options.inPlace === true);
  }

  /** The deadline of every wait from now on; a gang sets it from its measured step time. */
  get timeoutMs(): number {
    return this.timeoutMsNow;
  }

  set timeoutMs(ms: number) {
    this.timeoutMsNow = checkInt(ms, 'timeoutMs', 1);
    this.mailbox.setTimeoutMs(this.timeoutMsNow);
  }

  /**
   * Gives up at once: every wait here fails, the other ranks are told (peer_abort) so theirs fail too, and the
   * transport closes without lingering. A gang that reforms ends its generation this way.
   */
  abort(reason: string): Promise<void> {
    this.fail(new CommunicatorError(`rank ${this.rank}: ${reason}`, { retryable: true }), true);
    return this.close();
  }

  /**
   * Closes the transport once every peer this rank sent to has confirmed that all of it arrived, or has said bye
   * itself (so needs nothing more from this rank), waiting at most lingerMs. Pending waits fail.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    const broken = this.failure !== undefined;
    if (!broken) {
      this.failure = new CommunicatorError(`rank ${this.rank}: the communicator is closed`);
      this.mailbox.rejectAll(this.failure);
      this.wake?.();
      await this.sayBye();
    } else this.wake?.();
    // A broken communicator has nobody left to deliver to: it drops what is queued instead of lingering.
    await this.transport.close(broken);
  }

  /** Sends peer_bye after everything else and waits for the answers (see PeerBye in messages.ts). */
  private async sayBye(): Promise<void> {
    const deadline = this.clock.now() + this.lingerMs;
    const unconfirmed = (): number[] =>
      [...this.peers.keys()].filter((r) => !this.byes.has(r) && !this.byesAcked.has(r));
    for (const r of unconfirmed()) {
      this.byesSent.add(r);
      void this.sendMessage(r, { type: 'peer_bye', source: this.rank, ack: false }).catch(() => undefined);
    }
    while (unconfirmed().length > 0 && this.clock.now() < deadline) await this.nap(deadline - this.clock.now());
    const missing = unconfirmed();
    if (missing.length > 0)
      this.log?.(
        `rank ${this.rank}: closing without word from rank ${missing.join(', ')} after ${this.lingerMs} ms; what was sent to them may be lost`,
      );
  }
}
