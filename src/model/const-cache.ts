// Position-dependent constants (masks, rotation tables, bucket one-hots) are built once per shape and kept
// out of every tf.tidy, so a training step does not rebuild and re-upload them. Bounded: decoding asks for a
// new shape each step, and the oldest entries are freed. The bound is far above the few shapes one forward pass
// uses, so an entry still referenced by a pending gradient is never the one evicted.
import * as tf from '@tensorflow/tfjs';

export class ConstCache {
  private readonly entries = new Map<string, tf.Tensor>();
  constructor(private readonly capacity = 64) {}

  get<T extends tf.Tensor>(key: string, make: () => T): T {
    const hit = this.entries.get(key);
    if (hit !== undefined && !hit.isDisposed) {
      // Re-insert so Map order is least-recently-used first.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit as T;
    }
    const made = tf.keep(tf.tidy(make));
    this.entries.set(key, made);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.get(oldest)?.dispose();
      this.entries.delete(oldest);
    }
    return made;
  }

  dispose(): void {
    for (const t of this.entries.values()) t.dispose();
    this.entries.clear();
  }
}
