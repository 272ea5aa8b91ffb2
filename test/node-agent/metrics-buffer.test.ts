import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsBuffer } from '../../node-agent/metrics-buffer.ts';
import type { MetricPoint } from '../../protocol/messages.ts';

const point = (step: number): MetricPoint => ({
  step,
  loss: 1,
  learningRate: 0.001,
  gradNorm: 1,
  tokensPerSecond: 1,
  time: step,
});

void test('the buffer keeps the newest points up to its capacity and counts what it dropped', () => {
  const b = new MetricsBuffer(5);
  b.push([1, 2, 3].map(point));
  b.push([4, 5, 6, 7].map(point));
  assert.equal(b.size, 5);
  assert.equal(b.dropped, 2);
  assert.deepEqual(
    b.take(3).map((p) => p.step),
    [3, 4, 5],
  );
  assert.deepEqual(
    b.take(10).map((p) => p.step),
    [6, 7],
  );
  assert.equal(b.size, 0);
  b.push([8].map(point));
  b.clear();
  assert.equal(b.size, 0);
  assert.equal(b.dropped, 0);
});

void test('capacity must be a positive integer', () => {
  assert.throws(() => new MetricsBuffer(0), RangeError);
  assert.throws(() => new MetricsBuffer(2.5), RangeError);
});
