// When the batch launcher polls its scheduler next. Each poll spawns a command (most of its cost) and sites dislike
// squeue spam, so a queue that stands still is polled less and less often: the base wait after anything changed,
// twice the last wait after each poll that changed nothing, up to the cap. A change, a submission or a departure
// (soon()) brings the base pace back. One chained timer on the injected clock, never an interval.
import type { Clock, TimerHandle } from '../../protocol/clock.ts';

export class PollSchedule {
  /** How long the next timed poll waits after the last one ended. */
  private waitMs: number;
  /** Something changed since the last poll ended: the poll in flight (or the next) ends at the base wait. */
  private changed = false;
  /** soon() came while a poll was in flight, whose answer may predate what it was called for: poll again. */
  private again = false;
  private inFlight = false;
  private running = false;
  private lastStartAt = -Infinity;
  private timer: TimerHandle | undefined;
  private dueAt: number | undefined;
  /** soon() never polls more often than this, so a burst of departures costs one poll, not one per agent. */
  private readonly soonGapMs: number;

  constructor(
    private readonly clock: Clock,
    readonly baseMs: number,
    readonly maxMs: number,
    private readonly poll: () => void,
  ) {
    this.waitMs = baseMs;
    this.soonGapMs = Math.min(baseMs, 1_000);
  }

  /** The wait the next timed poll is at (tests and the bench read it). */
  get currentWaitMs(): number {
    return this.waitMs;
  }

  /** Timed polls from now on, the first one the base wait away. */
  start(): void {
    this.running = true;
    this.waitMs = this.baseMs;
    this.arm(this.clock.now() + this.baseMs);
  }

  /** No more timed polls; the pace is back at the base. */
  stop(): void {
    this.running = false;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.dueAt = undefined;
    this.waitMs = this.baseMs;
    this.changed = false;
    this.again = false;
  }

  /** Something changed (a submission, a cancel): back to the base wait; a timed poll further off comes sooner. */
  reset(): void {
    this.changed = true;
    this.waitMs = this.baseMs;
    const soonest = this.clock.now() + this.baseMs;
    if (this.running && this.dueAt !== undefined && this.dueAt > soonest) this.arm(soonest);
  }

  /** Reset and poll now (at most once per soonGapMs; after the poll in flight, if there is one). */
  soon(): void {
    this.reset();
    if (!this.running) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const at = this.lastStartAt + this.soonGapMs;
    if (at <= this.clock.now()) this.fire();
    else this.arm(Math.min(at, this.dueAt ?? Infinity));
  }

  /** A poll (timed or not) begins. */
  started(): void {
    this.inFlight = true;
    this.lastStartAt = this.clock.now();
  }

  /**
   * A poll ended. The next one waits the base when it changed something (or something changed meanwhile), else
   * twice the last wait up to the cap; it comes no later than `notAfter` (a continuation due), nor than a poll
   * already armed sooner.
   */
  ended(changed: boolean, notAfter?: number): void {
    this.inFlight = false;
    if (!this.running) {
      // The adoption poll before start(), stop()'s wait for the queue: no timed polls to pace.
      this.changed = false;
      this.again = false;
      return;
    }
    this.waitMs = changed || this.changed ? this.baseMs : Math.min(this.waitMs * 2, this.maxMs);
    this.changed = false;
    const now = this.clock.now();
    let at = now + this.waitMs;
    if (notAfter !== undefined) at = Math.min(at, Math.max(now + this.baseMs, notAfter));
    if (this.again) at = Math.min(at, Math.max(now, this.lastStartAt + this.soonGapMs));
    this.again = false;
    if (this.dueAt !== undefined) at = Math.min(at, this.dueAt);
    this.arm(at);
  }

  private arm(at: number): void {
    this.clock.clearTimeout(this.timer);
    this.dueAt = at;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, at - this.clock.now()));
  }

  private fire(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.dueAt = undefined;
    this.poll();
  }
}
