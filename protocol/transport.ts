// Transports move typed messages; the codec turns bytes into messages and refuses bad ones.
// The coordinator holds a ServerTransport (ZeroMQ ROUTER), each agent a ClientTransport (ZeroMQ DEALER).
// Implementations: zmq-transport.ts (real sockets) and memory-transport.ts (logic tests).
// The communicator's ranks talk peer to peer over a PeerTransport instead (below).
import type { AgentToCoordinator, CoordinatorToAgent, Brand, PeerMessage } from './messages.ts';
import type { MalformedMessageError } from './errors.ts';
import type { FrameItem } from './codec.ts';

/** The routing identity of a connected peer (the ROUTER's view of a DEALER). */
export type PeerId = Brand<string, 'PeerId'>;

export type Inbound<M> =
  { kind: 'message'; from: PeerId; message: M } | { kind: 'malformed'; from: PeerId; error: MalformedMessageError };

/** One decoded item of a frame, as inbound() yields it. */
export function inboundOf<M>(item: FrameItem<M>, from: PeerId): Inbound<M> {
  return item.ok ? { kind: 'message', from, message: item.message } : { kind: 'malformed', from, error: item.error };
}

export interface ServerTransport {
  /** The address agents connect to, with the real port if bound on port 0/*. */
  readonly address: string;
  send(to: PeerId, message: CoordinatorToAgent): Promise<void>;
  /** Every inbound message or decoding failure, in arrival order; ends when closed. */
  inbound(): AsyncIterable<Inbound<AgentToCoordinator>>;
  close(): Promise<void>;
}

export interface ClientTransport {
  send(message: AgentToCoordinator): Promise<void>;
  inbound(): AsyncIterable<Inbound<CoordinatorToAgent>>;
  close(): Promise<void>;
}

/**
 * Peer to peer, for the communicator's ranks: each rank listens at one address and sends to the others' addresses.
 * Messages from one sender to one address arrive in the order sent. A `bulk` payload travels as a second frame that
 * is sent from where it lies, without a copy: the sender must not write to it until the send has settled.
 * Implementations: zmq-peer-transport.ts (real sockets) and memory-peer-transport.ts (logic tests).
 */
export interface PeerTransport {
  /** Where the others reach this endpoint (the real port when bound on port 0). */
  readonly address: string;
  /**
   * Starts delivery: every valid inbound message goes to `deliver`, in arrival order, with a bulk payload already
   * in `data` as a Float32Array the receiver owns; frames that are not valid are logged and dropped. Call once.
   */
  start(deliver: (message: PeerMessage) => void): void;
  /** Rejects when the message cannot be sent (a full queue past the send timeout, a closed endpoint). */
  send(to: string, message: PeerMessage, bulk?: Uint8Array): Promise<void>;
  /** One message to an endpoint that is not a peer (a refused newcomer), best effort, holding nothing open. */
  tell(to: string, message: PeerMessage): void;
  /** Closes everything. `discard`: drop what is still queued for the peers instead of lingering to deliver it. */
  close(discard: boolean): Promise<void>;
}
