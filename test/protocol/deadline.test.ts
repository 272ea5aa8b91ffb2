import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../protocol/clock.ts';
import { raceDeadline, settledWithin, TIMED_OUT, withDeadline } from '../../protocol/deadline.ts';

void test('raceDeadline gives the value when the work wins, and clears its timer', async () => {
  const clock = new SimulatedClock();
  assert.equal(await raceDeadline(Promise.resolve(7), 1000, clock), 7);
  assert.equal(clock.pending, 0);
});

void test('raceDeadline gives TIMED_OUT when the clock passes the deadline first', async () => {
  const clock = new SimulatedClock();
  const outcome = raceDeadline(new Promise(() => undefined), 1000, clock);
  await clock.advance(999);
  let settled = false;
  void outcome.then(() => (settled = true));
  await clock.advance(0);
  assert.equal(settled, false);
  await clock.advance(1);
  assert.equal(await outcome, TIMED_OUT);
  assert.equal(clock.pending, 0);
});

void test('withDeadline rejects with the error it is given, and passes rejections of the work through', async () => {
  const clock = new SimulatedClock();
  const late = withDeadline(new Promise(() => undefined), 50, () => new Error('no status within 50 ms'), clock);
  const check = assert.rejects(late, /no status within 50 ms/);
  await clock.advance(50);
  await check;
  await assert.rejects(
    withDeadline(Promise.reject(new Error('refused')), 50, () => new Error('late'), clock),
    /refused/,
  );
});

void test('settledWithin counts a rejection as settled and a hung promise as not', async () => {
  const clock = new SimulatedClock();
  assert.equal(await settledWithin(Promise.reject(new Error('x')), 10, clock), true);
  const hung = settledWithin(new Promise(() => undefined), 10, clock);
  await clock.advance(10);
  assert.equal(await hung, false);
});
