// The agent's way out: every message goes straight to the transport, which keeps the order and packs messages
// that queue up into shared frames. Sends never reject; droppable ones (heartbeats) are shed behind a blocked socket.
import type { Logger } from 'pino';
import type { AgentToCoordinator } from '../protocol/messages.ts';
import type { ClientTransport } from '../protocol/transport.ts';

const MAX_PENDING_SENDS = 1_000;

export class Outbox {
  /** Settles after every send before it (the transport settles sends in order). */
  private lastSend: Promise<boolean> = Promise.resolve(true);
  private pendingSends = 0;
  private closed = false;

  constructor(
    private readonly transport: ClientTransport,
    /** The agent's current logger (its lines carry the agent id, which changes on a rejoin). */
    private readonly log: () => Logger,
  ) {}

  /** Queue a message; the promise says whether it left (it never rejects). */
  send(message: AgentToCoordinator, droppable = false): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    // Heartbeats pile up uselessly behind a blocked socket; job messages must not be dropped.
    if (droppable && this.pendingSends > MAX_PENDING_SENDS) return Promise.resolve(false);
    this.pendingSends++;
    const sent = this.transport
      .send(message)
      .then(
        () => true,
        (error: unknown) => {
          this.log().warn(
            { err: error, type: message.type },
            `sending ${message.type} failed: ${(error as Error).message}`,
          );
          return false;
        },
      )
      .finally(() => {
        this.pendingSends--;
      });
    this.lastSend = sent;
    return sent;
  }

  /** Take no more messages; the promise settles once everything queued before has settled. */
  close(): Promise<boolean> {
    this.closed = true;
    return this.lastSend;
  }
}
