// Time, injected: actors take a Clock so logic tests can run hours of heartbeats in microseconds.
// SystemClock is the real thing; SimulatedClock moves only when a test calls advance().

/** An opaque timer handle; only the clock that made it can clear it. */
export type TimerHandle = object;

export interface Clock {
  /** Milliseconds since the epoch (or since the simulation began). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle | undefined): void;
  /** Resolves after ms (on a SimulatedClock: when advance() passes it). */
  sleep(ms: number): Promise<void>;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return setTimeout(fn, ms);
  }
  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    return setInterval(fn, ms);
  }
  clearInterval(handle: TimerHandle | undefined): void {
    if (handle !== undefined) clearInterval(handle as ReturnType<typeof setInterval>);
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

export const systemClock: Clock = new SystemClock();

interface SimTimer {
  readonly id: number;
  at: number;
  readonly every: number | undefined;
  readonly fn: () => void;
}

/** A clock that only moves when told to; timers fire in time order during advance(). */
export class SimulatedClock implements Clock {
  private time: number;
  private nextId = 1;
  private readonly timers = new Map<number, SimTimer>();

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, undefined);
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    const id = (handle as { id?: unknown } | undefined)?.id;
    if (typeof id === 'number') this.timers.delete(id);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(1, ms));
  }

  clearInterval(handle: TimerHandle | undefined): void {
    this.clearTimeout(handle);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  /** Number of timers still scheduled (tests use it to check nothing leaks). */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Move time forward by ms, firing due timers in order. Between timers it yields to the microtask
   * queue so promise chains started by a timer settle before the next one fires.
   */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    // Bounded: a zero-interval loop cannot spin forever because intervals are at least 1 ms.
    for (;;) {
      await flushMicrotasks();
      let due: SimTimer | undefined;
      for (const t of this.timers.values()) {
        if (t.at <= target && (due === undefined || t.at < due.at || (t.at === due.at && t.id < due.id))) due = t;
      }
      if (due === undefined) break;
      this.time = Math.max(this.time, due.at);
      if (due.every === undefined) this.timers.delete(due.id);
      else due.at += due.every;
      due.fn();
    }
    this.time = target;
    await flushMicrotasks();
  }

  private add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.time + Math.max(0, ms), every, fn });
    return { id };
  }
}

/** Let pending promise callbacks run (several turns, as chains of awaits need more than one). */
export async function flushMicrotasks(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}
