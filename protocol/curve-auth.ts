// CURVE on ZeroMQ sockets: key checks, the client side, and the server side with a ZAP handler (RFC 27) in a context
// of its own that admits only allow-listed client keys. The coordinator's transport and the communicator share it.
import * as zmq from 'zeromq';
import { checkKey, z85Encode } from './keys.ts';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

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
