// The ZeroMQ transport: the coordinator binds a ROUTER, each agent connects a DEALER. A frame carries one message,
// or several back to back when they queued up behind a busy socket (SendQueue); a message whose `data` holds 64 KiB
// or more is followed by those bytes as a second frame (encodeParts in codec.ts), which ZeroMQ sends without a copy.
// Bounded everywhere: high-water marks cap the queues, sends give up after sendTimeoutMs with a TransportError,
// frames over the cap are refused before decoding, and close() uses linger 0 so nothing keeps the process alive.
// With curve set, the server runs a ZAP handler in its own context and accepts only allow-listed client keys
// (curve-auth.ts); the send side is send-queue.ts. This file holds the sockets' lifecycle and the receive loop.
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
import { applyClientCurve, startCurveAuth, type ClientCurve, type CurveAuth, type ServerCurve } from './curve-auth.ts';
import { MalformedMessageError, TransportError } from './errors.ts';
import type { AgentToCoordinator, CoordinatorToAgent } from './messages.ts';

export type { ClientCurve, ServerCurve } from './curve-auth.ts';
import { SendQueue, immediateWriter } from './send-queue.ts';
import { inboundOf } from './transport.ts';
import type { ClientTransport, Inbound, PeerId, ServerTransport } from './transport.ts';

/**
 * Reads `socket` until a receive fails, as it does once the socket is closed: `failed` hears why, `queue` is closed
 * and the returned promise resolves. Each message's frames go to `take`, which decodes them into `queue` and returns
 * true when it handed a message to a reader that was waiting for one. Then the next receive waits for a nextTick,
 * which runs once the microtasks queued so far have run: the reader's reaction (typically a reply, sent at once)
 * goes out first, and the system calls of asking ZeroMQ for the next frame are off the round trip's critical path
 * (measured by `npm run bench -- protocol --only messages`). The coordinator's and the agent's transports share
 * this loop; each gives its own `take`.
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
