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
