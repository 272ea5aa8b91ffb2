// A checkpoint damaged in transit (fault injection in the coordinator process) is refused with checkpoint_ack
// ok:false; the real agent uploads it again, the resend is stored, and the run completes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  entries,
  exitWithin,
  fakeWorkload,
  fakeWorkloadExperiment,
  killAll,
  runsFixture,
  startRun,
  writeExperiment,
} from './helpers.ts';

after(killAll);

void test('a corrupt checkpoint chunk is refused and the agent sends it again', { timeout: 60_000 }, async (t) => {
  const dir = runsFixture(t);
  const file = writeExperiment(
    dir,
    fakeWorkloadExperiment('corrupt', {
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { perStepMs: 10, checkpointBytes: 3000 } }],
      training: { steps: 60 },
    }),
  );
  const { run, runDir, ctx } = await startRun(
    dir,
    file,
    ['--agents', '1', '--view', 'off', '--workload-module', fakeWorkload],
    { env: { PE_ARENA_FAULT_CORRUPT_UPLOADS: '1' } },
  );
  const exit = await exitWithin(run, 45_000, ctx);
  assert.equal(exit.code, 0, ctx());
  const log = readFileSync(join(runDir, 'logs', 'coordinator.log'), 'utf8');
  const refused = /refused checkpoint upload for rope-addition-s1 .*sha256 mismatch/.exec(log);
  assert.ok(refused, 'the damaged upload was refused');
  // The refused upload (step 20) was sent again and acknowledged: the journal has it once, with every later one.
  const acked = entries(runDir, 'checkpoint_acked')
    .filter((e) => e.kind === 'checkpoint')
    .map((e) => e.checkpoint.step);
  assert.deepEqual(acked, [20, 40], `acknowledged checkpoints: ${acked.join(', ')}`);
  assert.equal(entries(runDir, 'job_done').length, 1);
});
