import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncQueue } from '../../protocol/async-queue.ts';

void test('items come out in order, across waiting and queued, and close ends every waiter', async () => {
  const q = new AsyncQueue<number>();
  const first = q.next();
  const second = q.next();
  assert.equal(q.push(1), true); // handed to a waiting reader
  assert.equal(q.push(2), true);
  assert.equal(q.push(3), false); // queued
  assert.deepEqual(await first, { value: 1, done: false });
  assert.deepEqual(await second, { value: 2, done: false });
  for (let i = 4; i < 3000; i++) q.push(i); // enough to trigger compaction
  const got: number[] = [];
  for (let i = 3; i < 3000; i++) got.push((await q.next()).value as number);
  assert.deepEqual(
    got,
    Array.from({ length: 2997 }, (_, i) => i + 3),
  );
  const pending = [q.next(), q.next()];
  q.close();
  assert.deepEqual(await Promise.all(pending), [
    { value: undefined, done: true },
    { value: undefined, done: true },
  ]);
  assert.equal(q.push(99), false); // ignored after close
  assert.equal((await q.next()).done, true);
});

void test('items queued before close are still delivered, then iteration ends', async () => {
  const q = new AsyncQueue<string>();
  q.push('a');
  q.push('b');
  q.close();
  const seen: string[] = [];
  for await (const item of q) seen.push(item);
  assert.deepEqual(seen, ['a', 'b']);
});
