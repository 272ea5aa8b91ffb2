// The timing helpers the runtime benchmark uses for agent_overhead_ratio: both count the same steps, and both
// measure at least the time the steps take (the fake workload sleeps stepDelayMs a step).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { timeJobDirect, timeJobInWorker } from '../../node-agent/job-timing.ts';
import { FAKE_WORKLOAD, makeSpec } from './helpers.ts';

const STEP_MS = 10;

void test(
  'timeJobInWorker and timeJobDirect time the same steps after the warm-up, at the pace they run',
  { timeout: 30_000 },
  async () => {
    const spec = makeSpec({ training: { ...makeSpec().training, steps: 40 } }, { stepDelayMs: STEP_MS });
    const worker = await timeJobInWorker(spec, { workloadModule: FAKE_WORKLOAD, warmupSteps: 5, timeoutMs: 20_000 });
    const direct = await timeJobDirect(spec, { workloadModule: FAKE_WORKLOAD, warmupSteps: 5 });
    assert.equal(worker.steps, 35);
    assert.equal(direct.steps, 35);
    assert.equal(worker.tokensPerSecond, 1000);
    assert.equal(direct.tokensPerSecond, 1000);
    // Direct times steps 6..40 (one sleep a slice; a timer may fire up to a millisecond early).
    assert.ok(direct.wallS * 1000 >= 35 * STEP_MS - 4, `direct: ${direct.wallS} s for 35 steps`);
    // The worker's clock starts when the slice holding step 5 arrives: that slice ends by step 14 (slices <= 10).
    assert.ok(worker.wallS * 1000 >= (40 - 14) * STEP_MS - 4, `worker: ${worker.wallS} s`);
    // The same work at the same pace: the two rates agree within a factor of two.
    const ratio = worker.stepsPerS / direct.stepsPerS;
    assert.ok(ratio > 0.5 && ratio < 2, `worker ${worker.stepsPerS} vs direct ${direct.stepsPerS} steps/s`);
  },
);
