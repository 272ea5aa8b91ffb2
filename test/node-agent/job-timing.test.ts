// The timing helpers the runtime benchmark uses for agent_overhead_ratio: both count the same steps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { timeJobDirect, timeJobInWorker } from '../../node-agent/job-timing.ts';
import { FAKE_WORKLOAD, makeSpec } from './helpers.ts';

void test('timeJobInWorker and timeJobDirect time the same steps after the warm-up', { timeout: 30_000 }, async () => {
  const spec = makeSpec({ training: { ...makeSpec().training, steps: 40 } }, { stepDelayMs: 1 });
  const worker = await timeJobInWorker(spec, { workloadModule: FAKE_WORKLOAD, warmupSteps: 5, timeoutMs: 20_000 });
  const direct = await timeJobDirect(spec, { workloadModule: FAKE_WORKLOAD, warmupSteps: 5 });
  assert.equal(worker.steps, 35);
  assert.equal(direct.steps, 35);
  assert.equal(worker.tokensPerSecond, 1000);
  assert.ok(worker.wallS > 0 && direct.wallS > 0);
});
