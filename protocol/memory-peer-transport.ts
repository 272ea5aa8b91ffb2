// An in-process network of peer endpoints for the communicator's logic tests: the PeerTransport of
// zmq-peer-transport.ts without sockets. Every message goes through encode and decodePeerParts, so validation runs
// as on the wire, and a bulk payload is copied on the way, as it would be by the network (the receiver owns what it
// gets). Delivery is asynchronous and in order per sender. As with ZeroMQ, what is sent to an address nobody listens
// at yet waits there for a listener, and what is sent to a closed endpoint is lost.
import { decodePeerParts, encode } from './codec.ts';
import type { DecodeOptions } from './codec.ts';
import { TransportError, asMalformed } from './errors.ts';
import type { PeerMessage } from './messages.ts';
import type { PeerTransport } from './transport.ts';

export interface MemoryPeerOptions {
  /** How log lines name this endpoint, e.g. 'rank 2'. */
  name?: string;
  maxFrameBytes?: number;
  log?: (line: string) => void;
}

interface Frames {
  body: Uint8Array;
  bulk: Uint8Array | undefined;
}

export class MemoryPeerNetwork {
  private readonly endpoints = new Map<string, MemoryPeerEndpoint>();
  private readonly unheard = new Map<string, Frames[]>();
  private nextPort = 1;

  /** A new endpoint; an address ending in ':0' gets a port of its own, as a bind on port 0 would. */
  bind(address: string, options: MemoryPeerOptions = {}): Promise<PeerTransport> {
    const real = address.endsWith(':0') ? `${address.slice(0, -2)}:${this.nextPort++}` : address;
    if (this.endpoints.has(real))
      return Promise.reject(new TransportError(`could not bind ${real}: already in use`, { retryable: true }));
    const endpoint = new MemoryPeerEndpoint(real, this, options);
    this.endpoints.set(real, endpoint);
    for (const frames of this.unheard.get(real) ?? []) endpoint.arrive(frames);
    this.unheard.delete(real);
    return Promise.resolve(endpoint);
  }

  /** The binder a Communicator takes (its `bindTransport` option). */
  binder(options: MemoryPeerOptions = {}): (address: string) => Promise<PeerTransport> {
    return (address) => this.bind(address, options);
  }

  /** Frames as they are, as if a peer had sent them (bad-input tests). */
  inject(to: string, body: Uint8Array, bulk?: Uint8Array): void {
    this.route(to, { body, bulk });
  }

  /** The addresses bound now. */
  get addresses(): string[] {
    return [...this.endpoints.keys()];
  }

  /** @internal */
  route(to: string, frames: Frames): void {
    const endpoint = this.endpoints.get(to);
    if (endpoint !== undefined) {
      endpoint.arrive(frames);
      return;
    }
    const queue = this.unheard.get(to) ?? [];
    queue.push(frames);
    this.unheard.set(to, queue);
  }

  /** @internal */
  unbind(address: string): void {
    this.endpoints.delete(address);
  }
}

class MemoryPeerEndpoint implements PeerTransport {
  private deliver: ((message: PeerMessage) => void) | undefined;
  /** Arrived before start(), as frames wait in a socket's queue until someone reads. */
  private early: Frames[] = [];
  private closed = false;
  private readonly decodeOptions: DecodeOptions;

  constructor(
    readonly address: string,
    private readonly network: MemoryPeerNetwork,
    private readonly options: MemoryPeerOptions,
  ) {
    this.decodeOptions = options.maxFrameBytes === undefined ? {} : { maxBytes: options.maxFrameBytes };
  }

  start(deliver: (message: PeerMessage) => void): void {
    this.deliver = deliver;
    for (const frames of this.early.splice(0)) this.arrive(frames);
  }

  /** @internal */
  arrive(frames: Frames): void {
    if (this.closed) return;
    if (this.deliver === undefined) {
      this.early.push(frames);
      return;
    }
    const deliver = this.deliver;
    setImmediate(() => {
      if (this.closed) return;
      let message: PeerMessage;
      try {
        message = decodePeerParts(frames.body, frames.bulk, this.decodeOptions);
      } catch (error) {
        this.options.log?.(
          `${this.options.name ?? this.address}: refused a frame from a peer: ${asMalformed(error).message}`,
        );
        return;
      }
      deliver(message);
    });
  }

  send(to: string, message: PeerMessage, bulk?: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`${this.address} is closed`));
    // The copy stands for the network: neither side sees the other's memory.
    this.network.route(to, { body: encode(message), bulk: bulk?.slice() });
    return Promise.resolve();
  }

  tell(to: string, message: PeerMessage): void {
    this.network.route(to, { body: encode(message), bulk: undefined });
  }

  close(): Promise<void> {
    this.closed = true;
    this.early = [];
    this.network.unbind(this.address);
    return Promise.resolve();
  }
}
