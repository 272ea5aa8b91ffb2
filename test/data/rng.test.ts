import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/data/rng.ts';

void test('Rng: seeded, uint32 state, exact restore, int in range', () => {
  const a = new Rng(42);
  for (let i = 0; i < 100; i++) a.next();
  const state = a.getState();
  assert.ok(state.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff));
  const want = Array.from({ length: 50 }, () => a.nextUint32());
  const b = new Rng(state);
  assert.deepEqual(
    Array.from({ length: 50 }, () => b.nextUint32()),
    want,
  );
  assert.notDeepEqual(new Rng(43).getState(), new Rng(42).getState());
  const r = new Rng(1);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = r.int(3, 7);
    assert.ok(v >= 3 && v <= 7);
    seen.add(v);
  }
  assert.equal(seen.size, 5);
});

void test('Rng.normals: seeded, mean 0 and the asked std, two uniforms per pair, odd counts', () => {
  const n = 20_000;
  const xs = new Rng(5).normals(n, 3);
  assert.deepEqual(xs, new Rng(5).normals(n, 3));
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const std = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / n);
  assert.ok(Math.abs(mean) < 0.1, `mean ${mean}`);
  assert.ok(Math.abs(std - 3) < 0.1, `std ${std}`);
  // Each (cos, sin) pair takes two uniforms, so an odd count leaves the stream where the next even count would.
  const odd = new Rng(9);
  const three = odd.normals(3);
  const even = new Rng(9);
  assert.deepEqual(Array.from(three), Array.from(even.normals(4)).slice(0, 3));
  assert.equal(odd.next(), even.next());
});
