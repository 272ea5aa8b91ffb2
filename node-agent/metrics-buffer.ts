// Metric points wait here between batches and while the coordinator is away. Bounded: when full, the
// oldest points are dropped (the newest say most about where training is) and counted.
import type { MetricPoint } from '../protocol/messages.ts';

export class MetricsBuffer {
  // A ring would avoid the shifts, but take() empties the buffer in batches, so splice cost stays small.
  private points: MetricPoint[] = [];
  private droppedCount = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`metrics buffer capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.points.length;
  }

  /** Points dropped because the buffer was full, since it was made or last cleared. */
  get dropped(): number {
    return this.droppedCount;
  }

  push(points: readonly MetricPoint[]): void {
    for (const p of points) this.points.push(p);
    const over = this.points.length - this.capacity;
    if (over > 0) {
      this.points.splice(0, over);
      this.droppedCount += over;
    }
  }

  /** Remove and return up to max of the oldest points. */
  take(max: number): MetricPoint[] {
    return this.points.splice(0, Math.max(0, max));
  }

  clear(): void {
    this.points = [];
    this.droppedCount = 0;
  }
}
