// Where a rank's inbound data waits for whoever asks for it: an envelope goes to the first waiter whose filter it
// matches, or is kept until a later wait asks for it (MPI's unexpected-message queue). Every wait has a deadline on
// the injected clock.
import type { Clock } from './clock.ts';
import { withDeadline } from './deadline.ts';

export interface Envelope {
  source: number;
  channel: 'p2p' | 'coll';
  tag: number;
  data: unknown;
}

interface Waiter {
  match: (e: Envelope) => boolean;
  resolve: (e: Envelope) => void;
  reject: (error: Error) => void;
}

export class Mailbox {
  private readonly unexpected: Envelope[] = [];
  private waiters: Waiter[] = [];

  constructor(
    private timeoutMs: number,
    private readonly clock: Clock,
  ) {}

  /** The deadline of waits that start from now on (a data-parallel gang scales it to its measured step time). */
  setTimeoutMs(ms: number): void {
    this.timeoutMs = ms;
  }

  deliver(envelope: Envelope): void {
    const index = this.waiters.findIndex((w) => w.match(envelope));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      waiter!.resolve(envelope);
    } else {
      this.unexpected.push(envelope);
    }
  }

  /** The first kept or future envelope that matches; after timeoutMs, the error that `timedOut` returns. */
  take(match: (e: Envelope) => boolean, timedOut: () => Error): Promise<Envelope> {
    const index = this.unexpected.findIndex(match);
    if (index >= 0) return Promise.resolve(this.unexpected.splice(index, 1)[0]!);
    let waiter!: Waiter;
    const arrived = new Promise<Envelope>((resolve, reject) => {
      waiter = { match, resolve, reject };
      this.waiters.push(waiter);
    });
    const expired = (): Error => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      return timedOut();
    };
    return withDeadline(arrived, this.timeoutMs, expired, this.clock);
  }

  /** Every wait pending now fails with error. */
  rejectAll(error: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(error);
  }
}
