// The ZeroMQ transport: the coordinator binds a ROUTER, each agent connects a DEALER. A frame carries one message,
// or several back to back when they queued up behind a busy socket (SendQueue); a message whose `data` holds 64 KiB
// or more is followed by those bytes as a second frame (encodeParts in codec.ts), which ZeroMQ sends without a copy.
// Bounded everywhere: high-water marks cap the queues, sends give up after sendTimeoutMs with a TransportError,
// frames over the cap are refused before decoding, and close() uses linger 0 so nothing keeps the process alive.
// With curve set, the server runs a ZAP handler in its own context and accepts only allow-listed client keys.
import * as zmq from 'zeromq';
import { AsyncQueue } from './async-queue.ts';
import {
  DEFAULT_MAX_FRAME_BYTES,
  decodeAgentBulk,
  decodeAgentFrame,
  decodeCoordinatorBulk,
  decodeCoordinatorFrame,
  encodeParts,
  type EncodedParts,
  type FrameItem,
} from './codec.ts';
import { MalformedMessageError, TransportError } from './errors.ts';
import { checkKey, z85Encode } from './keys.ts';
import type { AgentToCoordinator, CoordinatorToAgent } from './messages.ts';
import { inboundOf } from './transport.ts';
import type { ClientTransport, Inbound, PeerId, ServerTransport } from './transport.ts';

/**
 * Reads `socket` until a receive fails, as it does once the socket is closed: `failed` hears why, `queue` is closed
 * and the returned promise resolves. Each message's frames go to `take`, which decodes them into `queue` and returns
 * true when it handed a message to a reader that was waiting for one. Then the next receive waits for a nextTick,
 * which runs once the microtasks queued so far have run: the reader's reaction (typically a reply, sent at once)
 * goes out first, and the system calls of asking ZeroMQ for the next frame are off the round trip's critical path
 * (rtt p50 123 us instead of 132, raw zeromq.js 119; `npm run bench -- protocol --only messages`). The coordinator's
 * and the agent's transports share this loop; each gives its own `take`.
 */
function readAll<T>(
  socket: zmq.Dealer | zmq.Router,
  queue: AsyncQueue<T>,
  take: (frames: Buffer[]) => boolean,
  failed: (error: unknown) => void,
): Promise<void> {
  let stopped!: (error: unknown) => void;
  const done = new Promise<void>((resolve) => {
    stopped = (error) => {
      failed(error);
      queue.close();
      resolve();
    };
  });
  const next = (): void => {
    let receiving: Promise<Buffer[]>;
    try {
      receiving = socket.receive();
    } catch (error) {
      stopped(error);
      return;
    }
    receiving.then(received, stopped);
  };
  const received = (frames: Buffer[]): void => {
    let handedOver: boolean;
    try {
      handedOver = take(frames);
    } catch (error) {
      stopped(error);
      return;
    }
    if (handedOver) process.nextTick(next);
    else next();
  };
  next();
  return done;
}

export interface ZmqCommonOptions {
  /** Frames over this are refused before decoding (and ZeroMQ drops a peer that sends more than twice this). */
  maxFrameBytes?: number;
  /** Send and receive high-water mark, in messages per peer. */
  highWaterMark?: number;
  /** How long a send may wait on a full queue before it fails with TransportError. */
  sendTimeoutMs?: number;
  /** Connection events and refused frames, one line each. */
  log?: (line: string) => void;
}

export interface ZmqServerOptions extends ZmqCommonOptions {
  /** e.g. 'tcp://127.0.0.1:0' (any free port; read `address` after binding) or 'tcp://0.0.0.0:5555'. */
  address: string;
  curve?: ServerCurve;
}

export interface ZmqClientOptions extends ZmqCommonOptions {
  address: string;
  /** The identity the server sees (e.g. the agent id); ZeroMQ makes one up when absent. */
  routingId?: string;
  curve?: ClientCurve;
  /** First reconnect delay; doubles per failed attempt up to reconnectMaxIntervalMs. */
  reconnectIntervalMs?: number;
  reconnectMaxIntervalMs?: number;
}

const DEFAULTS = {
  highWaterMark: 1000,
  sendTimeoutMs: 10_000,
  reconnectIntervalMs: 100,
  reconnectMaxIntervalMs: 5_000,
};
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

function transportError(what: string, error: unknown): TransportError {
  const code = (error as { code?: unknown }).code;
  const reason = error instanceof Error ? error.message : String(error);
  return new TransportError(`${what}: ${reason}${typeof code === 'string' ? ` (${code})` : ''}`, {
    cause: error,
    retryable: true,
  });
}

/** Refused on the sending side too, so the caller learns at once instead of the peer dropping it. */
function tooBig(type: string, bytes: number, maxFrameBytes: number): TransportError {
  return new TransportError(
    `${type} of ${bytes} bytes is over the ${maxFrameBytes}-byte frame cap; send it in smaller chunks`,
  );
}

/** encodeParts, with each part held to the frame cap; what went wrong as a TransportError instead of a throw. */
function encodeChecked(
  message: AgentToCoordinator | CoordinatorToAgent,
  forWhom: string,
  maxFrameBytes: number,
): EncodedParts | TransportError {
  let parts: EncodedParts;
  try {
    parts = encodeParts(message);
  } catch (error) {
    return transportError(`could not encode ${message.type}${forWhom}`, error);
  }
  const bytes = Math.max(parts.head.byteLength, parts.bulk?.byteLength ?? 0);
  return bytes > maxFrameBytes ? tooBig(message.type, bytes, maxFrameBytes) : parts;
}

/** Messages queued behind a busy socket go out together in frames of at most this many bytes. */
export const COALESCE_BYTES = 64 * 1024;

interface PendingSend {
  /** Messages to the same destination may share a frame. */
  to: string;
  /** Raw bytes (sendRaw) and messages with a bulk frame always travel in a frame of their own. */
  alone: boolean;
  bytes: Uint8Array;
  /** A second frame after `bytes` (encodeParts); only with `alone`. */
  bulk: Uint8Array | undefined;
  /** bytes and bulk together, as counted against the queue's limit. */
  size: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

const NO_FRAME = new Uint8Array(0);

/** A write that throws instead of rejecting (zeromq.js does, for a closed socket) becomes a rejection. */
function attempt(write: () => Promise<void>): Promise<void> {
  try {
    return write();
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Serializes sends: zeromq.js allows only one send waiting on a full queue at a time (EBUSY otherwise).
 * A send with none ahead of it goes straight to the socket. Sends that queue up meanwhile go out together: the
 * next frame carries every waiting message to the same destination, back to back, up to COALESCE_BYTES, so a
 * busy stream pays ZeroMQ's per-frame cost once per batch instead of once per message. Order is kept, and each
 * send's promise settles with its frame.
 */
class SendQueue {
  private busy = false;
  private waiting: PendingSend[] = [];
  private head = 0;
  private waitingBytes = 0;

  /** The frame being written: one at a time, so the callbacks below need no closure per frame. */
  private currentTo = '';
  private currentFrame: Uint8Array = NO_FRAME;
  private currentBulk: Uint8Array | undefined;
  /** Frames written in a row without a turn of the event loop. */
  private inARow = 0;

  constructor(
    private readonly limit: number,
    private readonly what: string,
    private readonly maxFrameBytes: number,
    /** The socket's frame writer (immediateWriter). */
    private readonly writer: FrameWriter,
    private readonly failed: (to: string, error: unknown) => Error,
  ) {}

  /** `alone`: a frame of its own (raw bytes for tests and benchmarks); `bulk`: a second frame (implies alone). */
  send(to: string, bytes: Uint8Array, alone = false, bulk?: Uint8Array): Promise<void> {
    if (!this.busy) return this.start(to, bytes, bulk);
    // Bounded: refused only past both the high-water mark in messages and that many full frames in bytes, so that
    // an agent flushing a long outage's metrics (thousands of small messages, which leave many to a frame) and a
    // checkpoint's 1 MiB chunks both fit, as they did when every message was a frame.
    const waitingCount = this.waiting.length - this.head;
    const size = bytes.byteLength + (bulk?.byteLength ?? 0);
    if (waitingCount >= this.limit && this.waitingBytes + size > this.limit * COALESCE_BYTES) {
      return Promise.reject(
        new TransportError(
          `${this.what}: ${waitingCount} sends (${this.waitingBytes} bytes) already waiting; ` +
            'the peer is not keeping up',
          { retryable: true },
        ),
      );
    }
    this.waitingBytes += size;
    return new Promise((resolve, reject) => {
      this.waiting.push({ to, alone: alone || bulk !== undefined, bytes, bulk, size, resolve, reject });
    });
  }

  private start(to: string, frame: Uint8Array, bulk: Uint8Array | undefined): Promise<void> {
    this.busy = true;
    this.currentTo = to;
    this.currentFrame = frame;
    this.currentBulk = bulk;
    let sending: Promise<void>;
    if (++this.inARow >= SENDS_PER_YIELD) {
      // Like zeromq.js's own fast path: a sender that never waits must not starve the socket's reads.
      this.inARow = 0;
      sending = new Promise<void>((resolve) => setImmediate(resolve)).then(this.writeCurrent);
    } else sending = attempt(this.writeCurrent);
    return sending.then(this.next, this.whenFull);
  }

  private readonly writeCurrent = (): Promise<void> =>
    this.writer.write(this.currentTo, this.currentFrame, this.currentBulk);

  /** A write refused because the queue is full waits for room; any other failure fails the frame's sends. */
  private readonly whenFull = (error: unknown): Promise<void> => {
    if ((error as { code?: unknown }).code !== 'EAGAIN') return this.fail(error);
    return attempt(() => this.writer.writeWhenRoom(this.currentTo, this.currentFrame, this.currentBulk)).then(
      this.next,
      this.fail,
    );
  };

  private readonly fail = (error: unknown): never => {
    const to = this.currentTo;
    this.next();
    throw this.failed(to, error);
  };

  private readonly next = (): void => {
    this.busy = false;
    this.currentFrame = NO_FRAME; // not kept alive (a checkpoint chunk is 1 MiB) until the next send
    this.currentBulk = undefined;
    if (this.head === this.waiting.length) return;
    const first = this.waiting[this.head++]!;
    const batch = [first];
    let bytes = first.bytes.byteLength;
    let size = first.size;
    const cap = Math.min(COALESCE_BYTES, this.maxFrameBytes);
    while (!first.alone && this.head < this.waiting.length) {
      const candidate = this.waiting[this.head]!;
      if (candidate.alone || candidate.to !== first.to || bytes + candidate.bytes.byteLength > cap) break;
      batch.push(candidate);
      bytes += candidate.bytes.byteLength;
      size += candidate.size;
      this.head++;
    }
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    this.waitingBytes -= size;
    const frame = batch.length === 1 ? first.bytes : concat(batch, bytes);
    this.start(first.to, frame, first.bulk).then(
      () => {
        for (const p of batch) p.resolve();
      },
      (error: Error) => {
        for (const p of batch) p.reject(error);
      },
    );
  };
}

function concat(batch: PendingSend[], bytes: number): Uint8Array {
  const frame = new Uint8Array(bytes);
  let at = 0;
  for (const p of batch) {
    frame.set(p.bytes, at);
    at += p.bytes.byteLength;
  }
  return frame;
}

/** Frames a SendQueue writes in a row before it lets the event loop turn. */
const SENDS_PER_YIELD = 256;

/** How a SendQueue hands frames to its socket. */
interface FrameWriter {
  /** At once; rejects with code EAGAIN when the socket's queue is full. `bulk` follows `frame` in one message. */
  write(to: string, frame: Uint8Array, bulk: Uint8Array | undefined): Promise<void>;
  /** Waiting for room, up to the send timeout. */
  writeWhenRoom(to: string, frame: Uint8Array, bulk: Uint8Array | undefined): Promise<void>;
}

/**
 * The writer for a socket created with sendTimeout 0. zeromq.js then hands a frame to ZeroMQ at once, without first
 * asking whether the queue has room (a ZMQ_EVENTS query, two syscalls; a round trip paid two of them on top of the
 * query that follows every send while the receive loop waits). Only a full queue (EAGAIN) makes a frame wait for
 * room, up to timeoutMs, as a socket with that send timeout would.
 */
function immediateWriter(
  socket: zmq.Dealer | zmq.Router,
  timeoutMs: number,
  parts: (to: string, frame: Uint8Array, bulk: Uint8Array | undefined) => Uint8Array | Uint8Array[],
): FrameWriter {
  return {
    write: (to, frame, bulk) => socket.send(parts(to, frame, bulk)),
    writeWhenRoom: (to, frame, bulk) => {
      socket.sendTimeout = timeoutMs;
      return socket.send(parts(to, frame, bulk)).finally(() => {
        if (!socket.closed) socket.sendTimeout = 0;
      });
    },
  };
}

function peerIdOf(routingId: Buffer): PeerId {
  // Printable ids (agent ids) stay readable in logs; ZeroMQ's made-up binary ids are shown as hex.
  for (let i = 0; i < routingId.length; i++) {
    const byte = routingId[i]!;
    if (byte < 0x21 || byte > 0x7e) return `0x${routingId.toString('hex')}` as PeerId;
  }
  return routingId.toString('latin1') as PeerId;
}

function watchEvents(socket: zmq.Socket, name: string, log: ((line: string) => void) | undefined): void {
  if (log === undefined) return;
  const events = socket.events;
  events.on('disconnect', (e) => log(`${name}: peer at ${e.address} disconnected`));
  events.on('handshake:error:auth', (e) =>
    log(`${name}: CURVE authentication failed with ${e.address}: ${e.error.message}`),
  );
  events.on('handshake:error:protocol', (e) =>
    log(`${name}: handshake protocol error with ${e.address}: ${e.error.message}`),
  );
  events.on('handshake:error:other', (e) => log(`${name}: handshake failed with ${e.address}: ${e.error.message}`));
}

/** ZAP (RFC 27): libzmq asks this socket about every CURVE handshake; we answer 200 only for allowed keys. */
async function serveZap(
  zap: zmq.Reply,
  allowed: Set<string>,
  log: ((line: string) => void) | undefined,
): Promise<void> {
  for (;;) {
    let request: Buffer[];
    try {
      request = await zap.receive();
    } catch {
      return; // closed
    }
    const [version, requestId, , address, , mechanism, credentials] = request;
    const key = mechanism?.toString() === 'CURVE' && credentials?.length === 32 ? z85Encode(credentials) : undefined;
    const ok = key !== undefined && allowed.has(key);
    if (!ok)
      log?.(
        `refused a client at ${address?.toString() ?? '?'}: ${key === undefined ? 'no CURVE key' : `key ${key} is not allowed`}`,
      );
    try {
      await zap.send([
        version ?? '1.0',
        requestId ?? '',
        ok ? '200' : '400',
        ok ? 'OK' : 'key not allowed',
        ok ? (key ?? '') : '',
        '',
      ]);
    } catch {
      return;
    }
  }
}

export interface ServerCurve {
  publicKey: string;
  secretKey: string;
  /** Z85 public keys of the clients allowed in; defaults to [publicKey], the shared cluster pair. */
  allowedClientKeys?: string[];
}

export interface ClientCurve {
  serverPublicKey: string;
  publicKey: string;
  secretKey: string;
}

/** CURVE on the server side: a context of its own whose ZAP handler admits only the allowed client keys. */
export interface CurveAuth {
  /** Create the server socket in this context. */
  readonly context: zmq.Context;
  /** Makes the socket a CURVE server with the key pair. */
  apply(socket: zmq.Router): void;
  /** Starts answering ZAP requests (after the server socket is bound). */
  start(): void;
  close(): void;
}

export async function startCurveAuth(curve: ServerCurve, log?: (line: string) => void): Promise<CurveAuth> {
  checkKey(curve.publicKey, 'curve.publicKey');
  checkKey(curve.secretKey, 'curve.secretKey');
  const allowed = new Set(
    (curve.allowedClientKeys ?? [curve.publicKey]).map((k, i) => checkKey(k, `curve.allowedClientKeys[${i}]`)),
  );
  // Own context, so that this server's ZAP handler answers only for it (one ZAP endpoint per context).
  const context = new zmq.Context();
  const zap = new zmq.Reply({ context, linger: 0 });
  await zap.bind(ZAP_ENDPOINT);
  return {
    context,
    apply(socket) {
      socket.curveServer = true;
      socket.curvePublicKey = curve.publicKey;
      socket.curveSecretKey = curve.secretKey;
      socket.zapDomain = 'pe-arena';
    },
    start() {
      void serveZap(zap, allowed, log);
    },
    close() {
      zap.close();
    },
  };
}

export function applyClientCurve(socket: zmq.Dealer, curve: ClientCurve): void {
  socket.curveServerKey = checkKey(curve.serverPublicKey, 'curve.serverPublicKey');
  socket.curvePublicKey = checkKey(curve.publicKey, 'curve.publicKey');
  socket.curveSecretKey = checkKey(curve.secretKey, 'curve.secretKey');
}

class ZmqServer implements ServerTransport {
  private readonly decodeOptions: { maxBytes: number };
  private readonly queue = new AsyncQueue<Inbound<AgentToCoordinator>>();
  private readonly routes = new Map<PeerId, Buffer>();
  private lastSender: { routingId: Buffer; from: PeerId } | undefined;
  private readonly sends: SendQueue;
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly socket: zmq.Router,
    readonly address: string,
    private readonly maxFrameBytes: number,
    private readonly auth: CurveAuth | undefined,
    private readonly log: ((line: string) => void) | undefined,
    highWaterMark: number,
    sendTimeoutMs: number,
  ) {
    this.decodeOptions = { maxBytes: maxFrameBytes };
    this.sends = new SendQueue(
      highWaterMark,
      `send from ${address}`,
      maxFrameBytes,
      immediateWriter(socket, sendTimeoutMs, (to, frame, bulk) => {
        const route = this.routes.get(to as PeerId) ?? Buffer.from(to, 'latin1');
        return bulk === undefined ? [route, frame] : [route, frame, bulk];
      }),
      (to, error) => transportError(`send to ${to} via ${address}`, error),
    );
    this.loop = readAll(socket, this.queue, this.take, (error) => {
      if (!this.closed) this.log?.(`${this.address}: receive failed, closing: ${(error as Error).message}`);
    });
  }

  /** One message from the socket ([routing id, frame] or [routing id, frame, bulk]); true if a reader took it. */
  private readonly take = (frames: Buffer[]): boolean => {
    const routingId = frames[0];
    if (routingId === undefined) return false;
    const from = this.peerOf(routingId);
    if (frames.length !== 2 && frames.length !== 3) {
      this.malformed(
        from,
        new MalformedMessageError(`expected a message of 1 or 2 parts (frame, bulk), got ${frames.length - 1}`),
      );
      return false;
    }
    const items =
      frames.length === 2
        ? decodeAgentFrame(frames[1]!, this.decodeOptions)
        : decodeAgentBulk(frames[1]!, frames[2]!, this.decodeOptions);
    let handedOver = false;
    for (const item of items) {
      if (item.ok) handedOver = this.queue.push({ kind: 'message', from, message: item.message }) || handedOver;
      else this.malformed(from, item.error);
    }
    return handedOver;
  };

  /** Frames mostly come in runs from one agent: the last sender's id is reused instead of being rebuilt. */
  private peerOf(routingId: Buffer): PeerId {
    const last = this.lastSender;
    if (last !== undefined && last.routingId.equals(routingId)) return last.from;
    const from = peerIdOf(routingId);
    if (!this.routes.has(from)) this.routes.set(from, routingId);
    this.lastSender = { routingId, from };
    return from;
  }

  private malformed(from: PeerId, error: MalformedMessageError): void {
    this.log?.(`${this.address}: refused a frame from ${from}: ${error.message}`);
    this.queue.push({ kind: 'malformed', from, error });
  }

  send(to: PeerId, message: CoordinatorToAgent): Promise<void> {
    const parts = encodeChecked(message, ` for ${to}`, this.maxFrameBytes);
    if (parts instanceof TransportError) return Promise.reject(parts);
    if (this.closed) return Promise.reject(new TransportError(`${this.address} is closed`));
    return this.sends.send(to, parts.head, false, parts.bulk);
  }

  /** Sends bytes as they are, in a frame of their own (bad-input tests, benchmarks). */
  sendRaw(to: PeerId, bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`${this.address} is closed`));
    return this.sends.send(to, bytes, true);
  }

  inbound(): AsyncIterable<Inbound<AgentToCoordinator>> {
    return this.queue;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.auth?.close();
    await this.loop;
  }
}

class ZmqClient implements ClientTransport {
  private readonly decodeOptions: { maxBytes: number };
  private readonly queue = new AsyncQueue<Inbound<CoordinatorToAgent>>();
  private readonly sends: SendQueue;
  private closed = false;
  private readonly loop: Promise<void>;
  private readonly from: PeerId;

  constructor(
    private readonly socket: zmq.Dealer,
    readonly address: string,
    private readonly maxFrameBytes: number,
    private readonly log: ((line: string) => void) | undefined,
    highWaterMark: number,
    sendTimeoutMs: number,
  ) {
    this.from = address as PeerId;
    this.decodeOptions = { maxBytes: maxFrameBytes };
    this.sends = new SendQueue(
      highWaterMark,
      `send to ${address}`,
      maxFrameBytes,
      immediateWriter(socket, sendTimeoutMs, (_to, frame, bulk) => (bulk === undefined ? frame : [frame, bulk])),
      (_to, error) => transportError(`send to ${address}`, error),
    );
    this.loop = readAll(socket, this.queue, this.take, (error) => {
      if (!this.closed) this.log?.(`${this.address}: receive failed, closing: ${(error as Error).message}`);
    });
  }

  /** One message from the socket ([frame] or [frame, bulk]); true if a reader took it. */
  private readonly take = (frames: Buffer[]): boolean => {
    const items: FrameItem<CoordinatorToAgent>[] =
      frames.length === 1
        ? decodeCoordinatorFrame(frames[0]!, this.decodeOptions)
        : frames.length === 2
          ? decodeCoordinatorBulk(frames[0]!, frames[1]!, this.decodeOptions)
          : [
              {
                ok: false,
                error: new MalformedMessageError(
                  `expected a message of 1 or 2 parts (frame, bulk), got ${frames.length}`,
                ),
              },
            ];
    let handedOver = false;
    for (const item of items) {
      if (!item.ok) this.log?.(`${this.address}: refused a frame from the server: ${item.error.message}`);
      handedOver = this.queue.push(inboundOf(item, this.from)) || handedOver;
    }
    return handedOver;
  };

  send(message: AgentToCoordinator): Promise<void> {
    const parts = encodeChecked(message, '', this.maxFrameBytes);
    if (parts instanceof TransportError) return Promise.reject(parts);
    if (this.closed) return Promise.reject(new TransportError(`the connection to ${this.address} is closed`));
    return this.sends.send(this.address, parts.head, false, parts.bulk);
  }

  /** Sends bytes as they are, in a frame of their own (bad-input tests, benchmarks). */
  sendRaw(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`the connection to ${this.address} is closed`));
    return this.sends.send(this.address, bytes, true);
  }

  inbound(): AsyncIterable<Inbound<CoordinatorToAgent>> {
    return this.queue;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    await this.loop;
  }
}

function common(options: ZmqCommonOptions): { maxFrameBytes: number; highWaterMark: number; sendTimeoutMs: number } {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const highWaterMark = options.highWaterMark ?? DEFAULTS.highWaterMark;
  const sendTimeoutMs = options.sendTimeoutMs ?? DEFAULTS.sendTimeoutMs;
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1)
    throw new TransportError(`maxFrameBytes: expected a positive integer, got ${maxFrameBytes}`);
  if (!Number.isSafeInteger(highWaterMark) || highWaterMark < 1)
    throw new TransportError(`highWaterMark: expected a positive integer, got ${highWaterMark}`);
  if (!Number.isSafeInteger(sendTimeoutMs) || sendTimeoutMs < 0)
    throw new TransportError(`sendTimeoutMs: expected a non-negative integer, got ${sendTimeoutMs}`);
  return { maxFrameBytes, highWaterMark, sendTimeoutMs };
}

/** ZeroMQ's own cap: a peer sending more than this is disconnected without the frame ever being buffered whole. */
function hardCap(maxFrameBytes: number): number {
  return Math.min(Number.MAX_SAFE_INTEGER, maxFrameBytes * 2 + 1024);
}

export async function bindServer(
  options: ZmqServerOptions,
): Promise<ServerTransport & { sendRaw(to: PeerId, bytes: Uint8Array): Promise<void> }> {
  const { maxFrameBytes, highWaterMark, sendTimeoutMs } = common(options);
  const auth = options.curve === undefined ? undefined : await startCurveAuth(options.curve, options.log);
  const socket = new zmq.Router({
    ...(auth === undefined ? {} : { context: auth.context }),
    linger: 0,
    mandatory: true,
    // An agent that reconnects under the same routing id takes it over (otherwise the new connection is ignored
    // while the old one lingers).
    handover: true,
    sendHighWaterMark: highWaterMark,
    receiveHighWaterMark: highWaterMark,
    sendTimeout: 0, // see immediateWriter
    maxMessageSize: hardCap(maxFrameBytes),
  });
  auth?.apply(socket);
  watchEvents(socket, options.address, options.log);
  try {
    await socket.bind(options.address);
  } catch (error) {
    socket.close();
    auth?.close();
    throw transportError(`could not bind ${options.address}`, error);
  }
  auth?.start();
  const address = socket.lastEndpoint ?? options.address;
  return new ZmqServer(socket, address, maxFrameBytes, auth, options.log, highWaterMark, sendTimeoutMs);
}

export async function connectClient(
  options: ZmqClientOptions,
): Promise<ClientTransport & { sendRaw(bytes: Uint8Array): Promise<void> }> {
  const { maxFrameBytes, highWaterMark, sendTimeoutMs } = common(options);
  const socket = new zmq.Dealer({
    linger: 0,
    sendHighWaterMark: highWaterMark,
    receiveHighWaterMark: highWaterMark,
    sendTimeout: 0, // see immediateWriter
    maxMessageSize: hardCap(maxFrameBytes),
    reconnectInterval: options.reconnectIntervalMs ?? DEFAULTS.reconnectIntervalMs,
    reconnectMaxInterval: options.reconnectMaxIntervalMs ?? DEFAULTS.reconnectMaxIntervalMs,
    ...(options.routingId === undefined ? {} : { routingId: options.routingId }),
  });
  if (options.curve !== undefined) applyClientCurve(socket, options.curve);
  watchEvents(socket, options.address, options.log);
  try {
    socket.connect(options.address);
  } catch (error) {
    socket.close();
    throw transportError(`could not connect to ${options.address}`, error);
  }
  return Promise.resolve(
    new ZmqClient(socket, options.address, maxFrameBytes, options.log, highWaterMark, sendTimeoutMs),
  );
}
