// One way to bound a wait: race the work against a timer on an injected clock, and always clear the timer, so
// that neither a lost timer keeps a process alive nor a simulated clock keeps a pending one.
import { systemClock, type Clock } from './clock.ts';

/** What `raceDeadline` resolves to when the deadline came first. */
export const TIMED_OUT: unique symbol = Symbol('timed out');
export type TimedOut = typeof TIMED_OUT;

/** The work's value, or TIMED_OUT after ms. The work is not cancelled: the caller decides what a timeout means. */
export async function raceDeadline<T>(
  work: PromiseLike<T>,
  ms: number,
  clock: Clock = systemClock,
): Promise<T | TimedOut> {
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  const deadline = new Promise<TimedOut>((resolve) => {
    timer = clock.setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms));
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clock.clearTimeout(timer);
  }
}

/** The work's value, or a rejection with `timeoutError()` after ms. */
export async function withDeadline<T>(
  work: PromiseLike<T>,
  ms: number,
  timeoutError: () => Error,
  clock: Clock = systemClock,
): Promise<T> {
  const outcome = await raceDeadline(work, ms, clock);
  if (outcome === TIMED_OUT) throw timeoutError();
  return outcome;
}

/** Waits for the work at most ms; true if it settled in time (a rejection counts as settled). */
export async function settledWithin(
  work: PromiseLike<unknown>,
  ms: number,
  clock: Clock = systemClock,
): Promise<boolean> {
  const settled = Promise.resolve(work).then(
    () => true as const,
    () => true as const,
  );
  return (await raceDeadline(settled, ms, clock)) !== TIMED_OUT;
}
