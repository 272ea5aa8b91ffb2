// An in-process network for logic tests: same interfaces as the ZeroMQ transport, and every message goes through
// encode/decode, so validation runs exactly as on the wire. Delivery is asynchronous and in order per sender.
// Unlike ZeroMQ, sending to a closed or unknown peer rejects with TransportError (tests want to see it).
import { AsyncQueue } from './async-queue.ts';
import { decodeAgentFrame, decodeCoordinatorFrame, encode } from './codec.ts';
import type { DecodeOptions } from './codec.ts';
import { TransportError } from './errors.ts';
import type { AgentToCoordinator, CoordinatorToAgent } from './messages.ts';
import { inboundOf } from './transport.ts';
import type { ClientTransport, Inbound, PeerId, ServerTransport } from './transport.ts';

export interface MemoryServerOptions {
  maxFrameBytes?: number;
}

export interface MemoryClientOptions {
  /** The identity the server sees; a fresh one is made up when absent. */
  routingId?: string;
  maxFrameBytes?: number;
}

function decodeOptions(maxFrameBytes: number | undefined): DecodeOptions {
  return maxFrameBytes === undefined ? {} : { maxBytes: maxFrameBytes };
}

export class MemoryNetwork {
  private readonly servers = new Map<string, MemoryServer>();
  private nextClient = 0;

  listen(address: string, options: MemoryServerOptions = {}): MemoryServer {
    if (this.servers.has(address)) throw new TransportError(`memory transport: ${address} is already in use`);
    const server = new MemoryServer(address, decodeOptions(options.maxFrameBytes), () => this.servers.delete(address));
    this.servers.set(address, server);
    return server;
  }

  connect(address: string, options: MemoryClientOptions = {}): MemoryClient {
    const server = this.servers.get(address);
    if (server === undefined)
      throw new TransportError(`memory transport: nothing listens at ${address}`, { retryable: true });
    const id = (options.routingId ?? `mem-client-${++this.nextClient}`) as PeerId;
    return server.attach(id, decodeOptions(options.maxFrameBytes));
  }
}

export class MemoryServer implements ServerTransport {
  private readonly queue = new AsyncQueue<Inbound<AgentToCoordinator>>();
  private readonly clients = new Map<PeerId, MemoryClient>();
  private closed = false;

  constructor(
    readonly address: string,
    private readonly decode: DecodeOptions,
    private readonly onClose: () => void,
  ) {}

  /** @internal used by MemoryNetwork.connect */
  attach(id: PeerId, decode: DecodeOptions): MemoryClient {
    if (this.clients.has(id))
      throw new TransportError(`memory transport: routing id ${id} is already connected to ${this.address}`);
    const client = new MemoryClient(id, this, decode);
    this.clients.set(id, client);
    return client;
  }

  /** @internal a client's bytes arrive here. */
  deliver(from: PeerId, bytes: Uint8Array): void {
    if (this.closed)
      throw new TransportError(`memory transport: the server at ${this.address} is closed`, { retryable: true });
    setImmediate(() => {
      if (this.closed) return;
      for (const item of decodeAgentFrame(bytes, this.decode)) this.queue.push(inboundOf(item, from));
    });
  }

  /** @internal */
  detach(id: PeerId): void {
    this.clients.delete(id);
  }

  /** The peers connected now (tests use it to address a client). */
  get peers(): PeerId[] {
    return [...this.clients.keys()];
  }

  send(to: PeerId, message: CoordinatorToAgent): Promise<void> {
    return this.sendRaw(to, encode(message));
  }

  /** Sends bytes as they are, e.g. garbage for bad-input tests. */
  sendRaw(to: PeerId, bytes: Uint8Array): Promise<void> {
    if (this.closed)
      return Promise.reject(new TransportError(`memory transport: the server at ${this.address} is closed`));
    const client = this.clients.get(to);
    if (client === undefined)
      return Promise.reject(
        new TransportError(`memory transport: no peer ${to} at ${this.address}`, { retryable: true }),
      );
    client.deliver(bytes);
    return Promise.resolve();
  }

  inbound(): AsyncIterable<Inbound<AgentToCoordinator>> {
    return this.queue;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.queue.close();
    this.onClose();
    return Promise.resolve();
  }
}

export class MemoryClient implements ClientTransport {
  private readonly queue = new AsyncQueue<Inbound<CoordinatorToAgent>>();
  private closed = false;

  constructor(
    readonly id: PeerId,
    private readonly server: MemoryServer,
    private readonly decode: DecodeOptions,
  ) {}

  /** @internal the server's bytes arrive here. */
  deliver(bytes: Uint8Array): void {
    setImmediate(() => {
      if (this.closed) return;
      for (const item of decodeCoordinatorFrame(bytes, this.decode))
        this.queue.push(inboundOf(item, 'server' as PeerId));
    });
  }

  send(message: AgentToCoordinator): Promise<void> {
    return this.sendRaw(encode(message));
  }

  /** Sends bytes as they are, e.g. garbage for bad-input tests. */
  sendRaw(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`memory transport: client ${this.id} is closed`));
    try {
      this.server.deliver(this.id, bytes);
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve();
  }

  inbound(): AsyncIterable<Inbound<CoordinatorToAgent>> {
    return this.queue;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.queue.close();
    this.server.detach(this.id);
    return Promise.resolve();
  }
}
