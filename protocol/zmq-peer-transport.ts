// The communicator's peer transport over ZeroMQ: each rank binds one ROUTER and reaches every other rank through a
// DEALER of its own, so messages between two ranks arrive in the order they were sent. With curve set, every rank
// serves and connects with the same cluster key pair, and its ZAP handler admits only holders of that pair.
import * as zmq from 'zeromq';
import { decodePeerParts, encode } from './codec.ts';
import { applyClientCurve, startCurveAuth, type ClientCurve, type CurveAuth } from './curve-auth.ts';
import { TransportError, asMalformed } from './errors.ts';
import type { PeerMessage } from './messages.ts';
import type { PeerTransport } from './transport.ts';

export interface ZmqPeerOptions {
  /** Where to bind, e.g. 'tcp://127.0.0.1:0' (the OS picks the port; read `address` after binding). */
  address: string;
  /** How log lines name this endpoint, e.g. 'rank 2'. */
  name: string;
  /** Per-peer queue limit in messages. */
  highWaterMark: number;
  maxFrameBytes: number;
  /** How long a send may wait on a full queue before it fails. */
  sendTimeoutMs: number;
  /** How long closed sockets keep delivering what is queued. */
  lingerMs: number;
  /** The cluster key pair (protocol/keys.ts). */
  curve?: { publicKey: string; secretKey: string };
  log?: (line: string) => void;
}

interface Peer {
  socket: zmq.Dealer;
  /** The send before this one: one send at a time per socket (zeromq.js refuses a second blocked send). */
  tail: Promise<unknown>;
}

function peerName(routingId: Buffer | undefined): string {
  return routingId === undefined ? 'an unknown peer' : `0x${routingId.toString('hex')}`;
}

class ZmqPeerTransport implements PeerTransport {
  private readonly peers = new Map<string, Peer>();
  private readonly decodeOptions: { maxBytes: number };
  private readonly clientCurve: ClientCurve | undefined;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly router: zmq.Router,
    readonly address: string,
    private readonly auth: CurveAuth | undefined,
    private readonly options: ZmqPeerOptions,
  ) {
    this.decodeOptions = { maxBytes: options.maxFrameBytes };
    // Every rank serves with the cluster pair, so it is also the server key to expect from every peer.
    const curve = options.curve;
    this.clientCurve =
      curve === undefined
        ? undefined
        : { serverPublicKey: curve.publicKey, publicKey: curve.publicKey, secretKey: curve.secretKey };
  }

  start(deliver: (message: PeerMessage) => void): void {
    this.loop = this.receiveLoop(deliver);
  }

  private async receiveLoop(deliver: (message: PeerMessage) => void): Promise<void> {
    const { name, log } = this.options;
    for (;;) {
      let frames: Buffer[];
      try {
        frames = await this.router.receive();
      } catch {
        break; // closed
      }
      const body = frames[1];
      if (frames.length < 2 || frames.length > 3 || body === undefined) {
        log?.(`${name}: refused a message of ${frames.length - 1} frames (expected 1 or 2)`);
        continue;
      }
      let message: PeerMessage;
      try {
        message = decodePeerParts(body, frames[2], this.decodeOptions);
      } catch (error) {
        log?.(`${name}: refused a frame from ${peerName(frames[0])}: ${asMalformed(error).message}`);
        continue;
      }
      deliver(message);
    }
  }

  private peer(address: string): Peer {
    let peer = this.peers.get(address);
    if (peer === undefined) {
      const socket = new zmq.Dealer({
        linger: this.options.lingerMs,
        sendHighWaterMark: this.options.highWaterMark,
        sendTimeout: this.options.sendTimeoutMs,
        maxMessageSize: this.options.maxFrameBytes * 2 + 1024,
      });
      if (this.clientCurve !== undefined) applyClientCurve(socket, this.clientCurve);
      socket.connect(address);
      peer = { socket, tail: Promise.resolve() };
      this.peers.set(address, peer);
    }
    return peer;
  }

  send(to: string, message: PeerMessage, bulk?: Uint8Array): Promise<void> {
    const bytes = encode(message);
    const peer = this.peer(to);
    const sent = peer.tail.then(() => peer.socket.send(bulk === undefined ? bytes : [bytes, bulk]));
    peer.tail = sent.catch(() => undefined);
    return sent;
  }

  tell(to: string, message: PeerMessage): void {
    const socket = new zmq.Dealer({ linger: 200, sendTimeout: 200 });
    if (this.clientCurve !== undefined) applyClientCurve(socket, this.clientCurve);
    socket.connect(to);
    void socket
      .send(encode(message))
      .catch(() => undefined)
      .finally(() => socket.close());
  }

  async close(discard: boolean): Promise<void> {
    for (const peer of this.peers.values()) {
      if (discard) peer.socket.linger = 0;
      peer.socket.close();
    }
    this.router.close();
    this.auth?.close();
    await this.loop;
  }
}

/** Binds a rank's endpoint; a TransportError says why it could not (retryable when the bind itself failed). */
export async function bindZmqPeer(options: ZmqPeerOptions): Promise<PeerTransport> {
  let auth: CurveAuth | undefined;
  try {
    auth =
      options.curve === undefined
        ? undefined
        : await startCurveAuth({ ...options.curve, allowedClientKeys: [options.curve.publicKey] }, options.log);
  } catch (error) {
    throw new TransportError(`CURVE set-up failed: ${(error as Error).message}`, { cause: error });
  }
  const router = new zmq.Router({
    ...(auth === undefined ? {} : { context: auth.context }),
    linger: 0,
    receiveHighWaterMark: options.highWaterMark,
    maxMessageSize: options.maxFrameBytes * 2 + 1024,
  });
  auth?.apply(router);
  try {
    await router.bind(options.address);
  } catch (error) {
    router.close();
    auth?.close();
    throw new TransportError(`could not bind ${options.address}: ${(error as Error).message}`, {
      cause: error,
      retryable: true,
    });
  }
  auth?.start();
  return new ZmqPeerTransport(router, router.lastEndpoint ?? options.address, auth, options);
}
