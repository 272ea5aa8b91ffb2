// Deterministic train/test partition of a problem space. A problem is "held out" when a hash of its
// canonical key falls in the held-out fraction: the train stream never yields it and the test stream
// yields only such problems, so test problems are unseen in training however small the space is.

/** FNV-1a over UTF-16 code units, then an avalanche so nearby keys land far apart. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** True when `key` belongs to the held-out (test) part; fraction in [0, 1]. */
export function isHeldOut(key: string, fraction: number): boolean {
  return hash32(key) % 10000 < Math.round(fraction * 10000);
}

/** The seed of a split's stream: train uses the job seed, test a seed derived from it (different stream). */
export function splitSeed(seed: number, split: 'train' | 'test'): number {
  return split === 'train' ? seed >>> 0 : hash32(`test:${seed >>> 0}`);
}
