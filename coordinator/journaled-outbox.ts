// The journal-gated outbox: state changes are appended to the journal, and a message sent after one leaves only
// once that entry is fsync'd, so no agent acts on a state change that a crash could still erase.
import type { CoordinatorToAgent } from '../protocol/messages.ts';
import type { PeerId, ServerTransport } from '../protocol/transport.ts';
import type { Log } from './context.ts';
import type { Journal, JournalEntry } from './journal.ts';

export class JournaledOutbox {
  private syncScheduled = false;
  private held: { to: PeerId; message: CoordinatorToAgent }[] = [];

  constructor(
    private readonly journal: Journal,
    private readonly transport: ServerTransport,
    private readonly log: Log,
  ) {}

  record(entry: JournalEntry): void {
    this.journal.append(entry);
    this.scheduleSync();
  }

  /** Sends now, or after the fsync of the entries journaled before it (keeping the order of messages). */
  send(to: PeerId, message: CoordinatorToAgent): void {
    if (this.journal.pending || this.held.length > 0) {
      this.held.push({ to, message });
      this.scheduleSync();
      return;
    }
    this.sendNow(to, message);
  }

  /** Sends without waiting for the journal (the journal is closed, or the message changes no state). */
  sendNow(to: PeerId, message: CoordinatorToAgent): void {
    this.transport.send(to, message).catch((error: unknown) => {
      // A vanished peer is routine (debug); anything else dropped is worth a warning.
      const level =
        message.type === 'heartbeat_ack' || /unreachable|EHOSTUNREACH/i.test(String(error)) ? 'debug' : 'warn';
      this.log[level](
        { peer: to, type: message.type, err: error },
        `send of ${message.type} to ${to} failed: ${(error as Error).message}`,
      );
    });
  }

  /** Closes the journal and sends what still waited for it. */
  close(): void {
    this.journal.close();
    for (const { to, message } of this.held.splice(0)) this.sendNow(to, message);
  }

  /**
   * Group commit: one fsync per burst of journal entries (one fsync per entry stalls the loop when a thousand
   * agents join at once).
   */
  private scheduleSync(): void {
    if (this.syncScheduled) return;
    this.syncScheduled = true;
    setImmediate(() => this.syncNow());
  }

  private syncNow(): void {
    this.syncScheduled = false;
    try {
      this.journal.sync();
    } catch (error) {
      this.log.error({ err: error }, 'journal fsync failed');
    }
    const held = this.held;
    this.held = [];
    for (const { to, message } of held) this.sendNow(to, message);
  }
}
