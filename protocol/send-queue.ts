// The send side of a ZeroMQ socket: one frame at a time (zeromq.js refuses a second send waiting on a full queue),
// messages that queue up behind a busy socket coalesced into shared frames, and a writer that hands frames to ZeroMQ
// without asking first whether there is room.
import type * as zmq from 'zeromq';
import { TransportError } from './errors.ts';

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
export class SendQueue {
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
export interface FrameWriter {
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
export function immediateWriter(
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
