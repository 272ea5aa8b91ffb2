// Transports move typed messages; the codec turns bytes into messages and refuses bad ones.
// The coordinator holds a ServerTransport (ZeroMQ ROUTER), each agent a ClientTransport (ZeroMQ DEALER).
// Implementations: zmq-transport.ts (real sockets) and memory-transport.ts (logic tests).
import type { AgentToCoordinator, CoordinatorToAgent, Brand } from './messages.ts';
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
