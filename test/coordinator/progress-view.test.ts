// The live view's loss sparkline: a stalled or diverging job visible at a glance, as in the tools researchers use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../protocol/clock.ts';
import type { AgentStatus, JobStatus } from '../../protocol/messages.ts';
import { bucketLoss, ProgressView, sparkline, SPARKLINE_WIDTH } from '../../coordinator/progress-view.ts';

void test('sparkline: scaled between min and max, flat when constant, ! where the loss is not finite', () => {
  assert.equal(sparkline([8, 4, 2, 1]), '█▄▂▁');
  assert.equal(sparkline([1, 2, 3, 4, 5, 6, 7, 8]), '▁▂▃▄▅▆▇█');
  assert.equal(sparkline([0.5, 0.5, 0.5]), '▁▁▁');
  assert.equal(sparkline([3, 2, Number.NaN, Number.POSITIVE_INFINITY]), '█▁!!');
});

void test('bucketLoss: means over equal spans of steps, at most the sparkline width', () => {
  assert.deepEqual(bucketLoss([]), []);
  assert.deepEqual(
    bucketLoss(
      [1, 2, 3, 4].map((step) => ({ step, loss: step * 10 })),
      2,
    ),
    [15, 35],
  );
  const many = Array.from({ length: 300 }, (_, i) => ({ step: i + 1, loss: 300 - i }));
  const buckets = bucketLoss(many);
  assert.equal(buckets.length, SPARKLINE_WIDTH);
  assert.ok(
    buckets.every((v, i) => i === 0 || v < (buckets[i - 1] ?? Infinity)),
    'a falling loss falls',
  );
});

interface Job {
  step: number;
  loss: number;
}

function viewOf(job: Job, clock: SimulatedClock, out: string[]): ProgressView {
  const agents: AgentStatus[] = [];
  const source = {
    events: [],
    snapshot: () => ({
      experiment: 'x',
      runId: 'r',
      agents,
      jobs: [
        {
          jobId: 'rope-addition-s1',
          state: 'running',
          attempt: 1,
          epoch: 1,
          step: job.step,
          totalSteps: 1000,
          loss: job.loss,
        } as unknown as JobStatus,
      ],
    }),
  };
  return new ProgressView(source, {
    clock,
    out: { write: (s: string) => out.push(s) > 0, isTTY: false },
    plainEverySec: 1,
  });
}

void test('the view samples each job loss per frame: falling, then diverging after a resume goes back in steps', async () => {
  const clock = new SimulatedClock();
  const out: string[] = [];
  const job: Job = { step: 0, loss: 3 };
  const view = viewOf(job, clock, out);
  view.start();
  for (let i = 1; i <= 40; i++) {
    job.step = i * 5;
    job.loss = 3 / i;
    await clock.advance(1000);
  }
  const falling = view.snapshot().rows[0]?.lossTrend ?? '';
  assert.equal(falling.length, SPARKLINE_WIDTH);
  assert.equal(falling[0], '█');
  assert.equal(falling.at(-1), '▁');
  assert.match(out.at(-1) ?? '', /loss 0\.075 █/);

  // The job resumed from a checkpoint at step 100, then its loss climbs: the samples after step 100 are dropped.
  for (let i = 0; i < 10; i++) {
    job.step = 100 + i * 5;
    job.loss = 1 + i;
    await clock.advance(1000);
  }
  const diverging = view.snapshot().rows[0]?.lossTrend ?? '';
  assert.equal(diverging.at(-1), '█', `a climbing loss ends high: ${diverging}`);
  view.stop();
  assert.equal(clock.pending, 0);
});
